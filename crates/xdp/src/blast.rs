//! A traffic generator (seed 004's packetblaster, VxSPAN's trafgen): frames injected with
//! BPF_PROG_TEST_RUN in live-frames mode into `bpf/blast.c`, which redirects each of them out of
//! one interface. The kernel builds the frames in page-pool pages and hands them to the driver in
//! batches, with no socket and no copy from userspace per frame: on veth this outruns any
//! forwarder on the same machine, which a benchmark's sender has to.
//!
//! What was sent is read from the interface's own counters (tx_packets, tx_dropped), not
//! inferred from what was asked for.

use std::time::{Duration, Instant};

use aya::maps::xdp::DevMap;
use aya::programs::xdp::XdpLinkId;
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("blast: {what}: {e}")
}

/// Frames per live-frames batch (the kernel's default is 64).
const BATCH: u32 = 64;

/// A loaded generator bound to one interface.
pub struct Blaster {
    ebpf: Ebpf,
    ifname: String,
    link: Option<XdpLinkId>,
}

/// What one [`Blaster::blast`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlastReport {
    /// Frames injected.
    pub injected: u64,
    /// The interface's tx_packets increase.
    pub tx_packets: u64,
    /// The interface's tx_dropped increase (e.g. the peer could not take XDP frames).
    pub tx_dropped: u64,
    pub elapsed: Duration,
}

/// An interface's (tx_packets, tx_dropped), from sysfs.
pub fn tx_stats(ifname: &str) -> Result<(u64, u64), String> {
    let read = |what: &str| -> Result<u64, String> {
        let p = format!("/sys/class/net/{ifname}/statistics/{what}");
        std::fs::read_to_string(&p)
            .map_err(|e| err(&p, e))?
            .trim()
            .parse()
            .map_err(|e| err(&p, e))
    };
    Ok((read("tx_packets")?, read("tx_dropped")?))
}

/// Pins the calling thread to `cpu` (the frames of a test run are sent from the CPU it runs on).
pub fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is a plain bit set; zeroed is the empty set, and CPU_SET writes in bounds
    // (it ignores CPUs past the set's size).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(err(
            &format!("pinning to CPU {cpu}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Blaster {
    /// Loads the generator for `ifname`.
    pub fn open(ifname: &str) -> Result<Blaster, String> {
        let ifindex = crate::loader::ifindex(ifname).map_err(|e| err(ifname, e))?;
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .load(crate::blast_object())
            .map_err(|e| err("loading", e))?;
        for name in ["vxspan_blast", "vxspan_pass"] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| err(name, "missing"))?
                .try_into()
                .map_err(|e| err(name, e))?;
            p.load().map_err(|e| err(name, e))?;
        }
        let mut target: DevMap<_> = DevMap::try_from(
            ebpf.map_mut("target")
                .ok_or_else(|| err("target", "missing"))?,
        )
        .map_err(|e| err("target", e))?;
        target
            .set(0, ifindex, None, 0)
            .map_err(|e| err("target", e))?;
        let mut b = Blaster {
            ebpf,
            ifname: ifname.to_owned(),
            link: None,
        };
        // Without the attachment every test run waits for the dispatcher update (an RCU grace
        // period, milliseconds): it only costs speed, so a failure is not an error.
        if let Ok(p) = b.prog("vxspan_blast") {
            b.link = p.attach_to_if_index(ifindex, XdpMode::Driver).ok();
        }
        Ok(b)
    }

    fn prog(&mut self, name: &str) -> Result<&mut Xdp, String> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| err(name, "missing"))?
            .try_into()
            .map_err(|e| err(name, e))
    }

    /// Whether the generator's program is attached to the interface (each run is then fast).
    pub fn attached(&self) -> bool {
        self.link.is_some()
    }

    /// Sends `count` frames, cycling through `frames` (at least 1), at most `rate` frames per
    /// second if given. Frames go out in runs of up to 64 copies of one frame.
    pub fn blast(
        &mut self,
        frames: &[Vec<u8>],
        count: u64,
        rate: Option<u64>,
    ) -> Result<BlastReport, String> {
        if frames.is_empty() {
            return Err(err("frames", "nothing to send"));
        }
        let before = tx_stats(&self.ifname)?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut i = 0usize;
        while sent < count {
            let frame = &frames[i % frames.len()];
            i += 1;
            let n = (count - sent).min(u64::from(BATCH)) as u32;
            // As if received on lo (ifindex 1): what bpf/blast.c redirects.
            let ctx = crate::loader::xdp_md(frame.len() as u32, 1);
            self.prog("vxspan_blast")?
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    ctx_in: Some(&ctx),
                    repeat: n,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                })
                .map_err(|e| {
                    err(
                        "BPF_PROG_TEST_RUN (live frames)",
                        std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| e.to_string()),
                    )
                })?;
            sent += u64::from(n);
            if let Some(r) = rate.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(sent as f64 / r as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let elapsed = start.elapsed();
        let after = tx_stats(&self.ifname)?;
        Ok(BlastReport {
            injected: sent,
            tx_packets: after.0 - before.0,
            tx_dropped: after.1 - before.1,
            elapsed,
        })
    }

    /// Mean time of the XDP_PASS stub over `repeat` BPF_PROG_TEST_RUN runs on `frame`: the
    /// baseline of the classifier micro-benchmark.
    pub fn pass_ns(&mut self, frame: &[u8], repeat: u32) -> Result<Duration, String> {
        let p = self.prog("vxspan_pass")?;
        crate::loader::run_xdp(p, 1, frame, repeat).map(|r| r.2)
    }
}

impl Drop for Blaster {
    fn drop(&mut self) {
        if let Some(id) = self.link.take() {
            if let Ok(p) = self.prog("vxspan_blast") {
                let _ = p.detach(id);
            }
        }
    }
}
