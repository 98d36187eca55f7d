//! The kernel tier's program as a device-bound program with the driver's VLAN hint.
//!
//! A VLAN tag the kernel carries beside a frame instead of in it (a veth peer sending through a
//! VLAN sub-interface or tc with tx-vlan-offload on; a NIC that strips tags) is invisible to an
//! XDP program, except through the driver's metadata kfunc `bpf_xdp_metadata_rx_vlan_tag`. A
//! program may call it only if it is loaded bound to one device (`prog_ifindex` and
//! `BPF_F_XDP_DEV_BOUND_ONLY`), and only in native mode. aya 0.14 can set neither and does not
//! relocate kfunc calls, so this variant of the program (bpf/vxspan.c built with VX_VLAN_HINT) is
//! loaded with the system's libbpf (Debian's libbpf1, LGPL-2.1 OR BSD-2-Clause), through the
//! handful of functions declared below. It uses the maps of the aya-loaded object (by name, with
//! `bpf_map__reuse_fd`), so tables, counters and AF_XDP sockets are shared; each input gets its
//! own copy, attached through a bpf_link that a reload points at the next object's copy.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[repr(C)]
struct BpfObject {
    _opaque: [u8; 0],
}
#[repr(C)]
struct BpfProgram {
    _opaque: [u8; 0],
}
#[repr(C)]
struct BpfMap {
    _opaque: [u8; 0],
}

/// `struct bpf_link_create_opts` up to `flags` (libbpf reads no further than `sz`).
#[repr(C)]
struct LinkCreateOpts {
    sz: usize,
    flags: u32,
    _pad: u32,
}

#[link(name = "bpf")]
extern "C" {
    fn libbpf_set_print(f: *const c_void) -> *const c_void;
    fn bpf_object__open_mem(buf: *const c_void, size: usize, opts: *const c_void)
        -> *mut BpfObject;
    fn bpf_object__load(obj: *mut BpfObject) -> c_int;
    fn bpf_object__close(obj: *mut BpfObject);
    fn bpf_object__next_program(obj: *const BpfObject, prev: *mut BpfProgram) -> *mut BpfProgram;
    fn bpf_object__next_map(obj: *const BpfObject, prev: *const BpfMap) -> *mut BpfMap;
    fn bpf_program__name(prog: *const BpfProgram) -> *const c_char;
    fn bpf_program__set_autoload(prog: *mut BpfProgram, autoload: bool) -> c_int;
    fn bpf_program__set_ifindex(prog: *mut BpfProgram, ifindex: u32);
    fn bpf_program__flags(prog: *const BpfProgram) -> u32;
    fn bpf_program__set_flags(prog: *mut BpfProgram, flags: u32) -> c_int;
    fn bpf_program__fd(prog: *const BpfProgram) -> c_int;
    fn bpf_map__name(map: *const BpfMap) -> *const c_char;
    fn bpf_map__reuse_fd(map: *mut BpfMap, fd: c_int) -> c_int;
    fn bpf_link_create(
        prog_fd: c_int,
        target_fd: c_int,
        attach_type: u32,
        opts: *const LinkCreateOpts,
    ) -> c_int;
    fn bpf_link_update(link_fd: c_int, new_prog_fd: c_int, opts: *const c_void) -> c_int;
    fn bpf_map_lookup_batch(
        fd: c_int,
        in_batch: *mut c_void,
        out_batch: *mut c_void,
        keys: *mut c_void,
        values: *mut c_void,
        count: *mut u32,
        opts: *const c_void,
    ) -> c_int;
}

/// linux/bpf.h: `BPF_F_XDP_DEV_BOUND_ONLY`, `BPF_XDP` (enum bpf_attach_type).
const BPF_F_XDP_DEV_BOUND_ONLY: u32 = 1 << 6;
const BPF_XDP: u32 = 37;
/// linux/if_link.h: `XDP_FLAGS_SKB_MODE`, `XDP_FLAGS_DRV_MODE`.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

fn os_err(what: &str, ret: c_int) -> String {
    format!("{what}: {}", std::io::Error::from_raw_os_error(ret.abs()))
}

/// One input's loaded copy of the program (closed with the libbpf object; the kernel keeps it
/// while a link uses it).
pub struct Program {
    obj: *mut BpfObject,
    fd: RawFd,
}

// SAFETY: the libbpf object is owned by this value alone and only touched by `drop`; libbpf
// objects are not tied to the thread that made them.
unsafe impl Send for Program {}

impl Program {
    /// Loads the VLAN-hint program bound to `ifindex`, on the maps `maps` (name, descriptor).
    pub fn load(ifindex: u32, maps: &[(String, OwnedFd)]) -> Result<Program, String> {
        let buf = crate::hint_object();
        // SAFETY: a null print function turns libbpf's own messages off (errors come back as
        // return values, reported by the caller). `buf` is 'static, as libbpf requires of the
        // memory it parses until the object is closed.
        let obj = unsafe {
            libbpf_set_print(std::ptr::null());
            bpf_object__open_mem(buf.as_ptr().cast(), buf.len(), std::ptr::null())
        };
        if obj.is_null() {
            return Err("libbpf: opening the VLAN-hint object".into());
        }
        // From here `prog` owns `obj` and closes it on every return.
        let mut prog = Program { obj, fd: -1 };
        let name_of = |p: *const c_char| {
            // SAFETY: libbpf returns NUL-terminated names owned by the object, alive here.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        let mut ingress: *mut BpfProgram = std::ptr::null_mut();
        // SAFETY: iterating the object's programs; each pointer is owned by the object.
        let mut p = unsafe { bpf_object__next_program(prog.obj, std::ptr::null_mut()) };
        while !p.is_null() {
            // SAFETY: `p` is a program of the open object.
            unsafe {
                if name_of(bpf_program__name(p)) == "vxspan_ingress" {
                    ingress = p;
                    bpf_program__set_ifindex(p, ifindex);
                    let flags = bpf_program__flags(p) | BPF_F_XDP_DEV_BOUND_ONLY;
                    let r = bpf_program__set_flags(p, flags);
                    if r < 0 {
                        return Err(os_err("libbpf: program flags", r));
                    }
                } else {
                    bpf_program__set_autoload(p, false);
                }
                p = bpf_object__next_program(prog.obj, p);
            }
        }
        if ingress.is_null() {
            return Err("libbpf: vxspan_ingress missing from the VLAN-hint object".into());
        }
        // SAFETY: iterating the object's maps; each pointer is owned by the object.
        let mut m = unsafe { bpf_object__next_map(prog.obj, std::ptr::null()) };
        while !m.is_null() {
            // SAFETY: `m` is a map of the open object.
            let name = name_of(unsafe { bpf_map__name(m) });
            if let Some((_, fd)) = maps.iter().find(|(n, _)| *n == name) {
                // SAFETY: `fd` is a live map descriptor; libbpf duplicates it.
                let r = unsafe { bpf_map__reuse_fd(m, fd.as_raw_fd()) };
                if r < 0 {
                    return Err(os_err(&format!("libbpf: sharing map {name}"), r));
                }
            } else if !name.contains('.') {
                return Err(format!(
                    "libbpf: map {name} of the VLAN-hint object has no counterpart"
                ));
            }
            // SAFETY: as above.
            m = unsafe { bpf_object__next_map(prog.obj, m) };
        }
        // SAFETY: loading the prepared object.
        let r = unsafe { bpf_object__load(prog.obj) };
        if r < 0 {
            return Err(os_err("libbpf: loading the VLAN-hint program", r));
        }
        // libbpf parsed the kernel's BTF (several MB) to resolve the kfunc and freed it; hand
        // that memory back to the system (the appliance has 128 MB in all).
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        // SAFETY: `ingress` belongs to the loaded object.
        prog.fd = unsafe { bpf_program__fd(ingress) };
        if prog.fd < 0 {
            return Err(os_err("libbpf: program descriptor", prog.fd));
        }
        Ok(prog)
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: `obj` came from bpf_object__open_mem and is closed once, here.
        unsafe { bpf_object__close(self.obj) };
    }
}

/// Attaches the program `prog_fd` to `ifindex` through a new bpf_link with `flags`
/// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`): closing the last descriptor of the link
/// detaches it. The error is the errno (EBUSY / EEXIST: another program holds the interface).
/// Every input's attachment is such a link (aya's copy of the program too), so that one kind of
/// descriptor is swapped on reload and handed over to a restarted process.
pub fn link(prog_fd: RawFd, ifindex: u32, flags: u32) -> Result<OwnedFd, i32> {
    let opts = LinkCreateOpts {
        sz: std::mem::size_of::<LinkCreateOpts>(),
        flags,
        _pad: 0,
    };
    // SAFETY: `opts` is a valid, initialised prefix of bpf_link_create_opts with its size;
    // `prog_fd` is the caller's live program descriptor.
    let r = unsafe { bpf_link_create(prog_fd, ifindex as c_int, BPF_XDP, &opts) };
    if r < 0 {
        return Err(-r);
    }
    // SAFETY: a new link descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Points `link` at the program `prog_fd` (atomically: every frame sees one program or the
/// other).
pub fn update(link: &OwnedFd, prog_fd: RawFd) -> Result<(), String> {
    // SAFETY: both descriptors are live.
    let r = unsafe { bpf_link_update(link.as_raw_fd(), prog_fd, std::ptr::null()) };
    if r < 0 {
        return Err(os_err("bpf_link_update", r));
    }
    Ok(())
}

/// Keys read per BPF_MAP_LOOKUP_BATCH call: the buffer holds this many keys' values for every
/// possible CPU (40 bytes each: 40 KiB with 2 CPUs, 2.5 MiB with 128), reused for each chunk.
const BATCH_KEYS: u32 = 512;

/// Reads keys 0..`n` of the per-CPU array `fd`, whose values are `value_size` bytes, with
/// BPF_MAP_LOOKUP_BATCH (a few system calls for the 4,096 VLANs of an input, instead of one per
/// key), a chunk of keys at a time: `each(key, values)` gets each key's `ncpus` values, each
/// rounded up to 8 bytes. An error (a kernel without batch lookups, a short answer) is returned
/// before `each` has seen anything only for the first chunk; the caller reads per key then.
pub fn per_cpu_array(
    fd: RawFd,
    n: u32,
    value_size: usize,
    ncpus: usize,
    mut each: impl FnMut(u32, &[u8]),
) -> Result<(), String> {
    let stride = value_size.div_ceil(8) * 8 * ncpus;
    let chunk = BATCH_KEYS.min(n.max(1));
    let mut values = vec![0u8; chunk as usize * stride];
    let mut keys = vec![0u32; chunk as usize];
    let (mut done, mut next, mut first) = (0u32, 0u32, true);
    while done < n {
        let mut count = chunk.min(n - done);
        let mut from = next;
        // SAFETY: `keys` has room for `count` keys and `values` for `count` values of `stride`
        // bytes; the batch tokens are u32 keys (an array's); the kernel writes at most `count`
        // of each and the next token, and nothing after the call.
        let r = unsafe {
            bpf_map_lookup_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    (&mut from as *mut u32).cast()
                },
                (&mut next as *mut u32).cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                std::ptr::null(),
            )
        };
        first = false;
        if r < 0 && -r != libc::ENOENT {
            return Err(os_err("BPF_MAP_LOOKUP_BATCH", r));
        }
        let got = count.min(chunk).min(n - done);
        if keys[..got as usize]
            .iter()
            .enumerate()
            .any(|(i, k)| *k != done + i as u32)
        {
            return Err("BPF_MAP_LOOKUP_BATCH: keys out of order".into());
        }
        for (i, v) in values.chunks_exact(stride).take(got as usize).enumerate() {
            each(done + i as u32, v);
        }
        done += got;
        if r < 0 || got == 0 {
            break;
        }
    }
    if done != n {
        return Err(format!("BPF_MAP_LOOKUP_BATCH: {done} of {n} keys"));
    }
    Ok(())
}
