//! tcpdump-syntax filters, compiled by libpcap for Ethernet frames.
//!
//! The expression is compiled with `pcap_compile` on a dead `DLT_EN10MB` handle (optimised), so
//! it means exactly what it means to `tcpdump -r`: it runs on the frame as it is on the wire,
//! VLAN tags included (write `vlan 10 and tcp` to look inside a tagged frame). The cBPF it
//! produces is handed to the core's interpreter.

use vxspan_core::bpf::BpfInsn;
use vxspan_core::FilterCompiler;

/// Compiles filters with the system's libpcap.
#[derive(Debug, Default, Clone, Copy)]
pub struct Libpcap;

impl FilterCompiler for Libpcap {
    fn compile(&self, expr: &str) -> Result<Vec<BpfInsn>, String> {
        compile(expr)
    }
}

/// Compiles `expr` to cBPF.
pub fn compile(expr: &str) -> Result<Vec<BpfInsn>, String> {
    if expr.contains('\0') {
        return Err("the expression contains a NUL byte".into());
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    let prog = dead.compile(expr, true).map_err(|e| match e {
        pcap::Error::PcapError(m) => m,
        other => other.to_string(),
    })?;
    // The pcap crate exposes an instruction only through its Display form, "code jt jf k".
    prog.get_instructions()
        .iter()
        .map(|i| {
            let text = i.to_string();
            let mut f = text.split(' ').map(str::parse::<u64>);
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some(Ok(code)), Some(Ok(jt)), Some(Ok(jf)), Some(Ok(k))) => {
                    Ok(BpfInsn::new(code as u16, jt as u8, jf as u8, k as u32))
                }
                _ => Err(format!("unexpected instruction from libpcap: {text:?}")),
            }
        })
        .collect()
}

/// A filter compiled and evaluated by libpcap itself (`pcap_offline_filter`): the oracle the
/// core's interpreter is tested against.
pub struct LibpcapOracle(pcap::BpfProgram);

impl LibpcapOracle {
    pub fn new(expr: &str) -> Result<Self, String> {
        let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
        dead.compile(expr, true)
            .map(LibpcapOracle)
            .map_err(|e| e.to_string())
    }

    /// Whether libpcap accepts `frame` (captured and wire length both `frame.len()`).
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.0.filter(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxspan_core::bpf::BpfProgram;

    #[test]
    fn compiles_and_matches_like_libpcap() {
        let exprs = [
            "vlan 10",
            "tcp port 443",
            "udp",
            "ip6",
            "vlan and tcp",
            "not arp",
            "ether[12:2] = 0x88a8",
            "net 198.18.0.0/15",
            "len > 100",
        ];
        let frames: Vec<Vec<u8>> = vec![vec![0; 60], {
            let mut f = vec![0xff; 12];
            f.extend_from_slice(&[
                0x81, 0x00, 0x00, 0x0a, 0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 198,
                18, 0, 1, 198, 18, 0, 2, 0x01, 0xbb, 0x01, 0xbb,
            ]);
            f.resize(120, 0);
            f
        }];
        for e in exprs {
            let p = BpfProgram::new(compile(e).unwrap()).unwrap();
            let oracle = LibpcapOracle::new(e).unwrap();
            for f in &frames {
                assert_eq!(p.matches(f, f.len() as u32), oracle.matches(f), "{e}");
            }
        }
    }

    #[test]
    fn errors_are_libpcap_messages() {
        let e = compile("tcp port").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        assert!(compile("bogus keyword").is_err());
        assert!(compile("a\0b").is_err());
    }
}
