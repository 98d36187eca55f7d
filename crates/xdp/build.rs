//! Compiles bpf/*.c into BPF objects with clang (DESIGN.md section 3: C, not Rust, for the BPF
//! side; no CO-RE, since the kernels this targets may have no BTF of their own).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // The device-bound variant (src/hint.rs) is loaded with the system's libbpf.
    println!("cargo:rustc-link-lib=bpf");
    println!("cargo:rerun-if-changed=bpf/flowhash.h");
    println!("cargo:rerun-if-changed=bpf/balance.h");
    println!("cargo:rerun-if-changed=bpf/ratelimit.h");
    for (name, src, defines) in [
        ("vxspan", "vxspan", &[][..]),
        ("vxspan_hint", "vxspan", &["-DVX_VLAN_HINT"][..]),
        ("blast", "blast", &[][..]),
    ] {
        let src = format!("bpf/{src}.c");
        println!("cargo:rerun-if-changed={src}");
        let out = out_dir.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            // v3: atomic fetch-and-add (ERSPAN sequence numbers), 32-bit jumps; kernels from 5.12.
            .arg("-mcpu=v3")
            .args(defines)
            .arg("-I/usr/include/x86_64-linux-gnu")
            .args(["-c", &src, "-o"])
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed to compile {src} ({s})"),
            Err(e) => panic!(
                "cannot run {clang} to build the XDP program ({e}): install clang and libbpf-dev \
                 (scripts/install-deps does)"
            ),
        }
    }
}
