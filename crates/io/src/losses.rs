//! Copies that a transmit socket accepted, and the engine therefore counted as sent, but that
//! the kernel dropped later: when an AF_PACKET batch goes out with `sendmmsg`, or when an
//! AF_XDP TX ring is kicked. They are recorded here per output (by name) and reason, and moved
//! from `tx` to `tx_dropped` when counters are reported ([`TxLosses::apply`]).
//!
//! A socket serves an interface, which several outputs may share: each copy carries the id of
//! its output ([`TxLosses::id`], interned once per output name, `TxFrame::owner`), so a loss
//! lands on the output the engine counted the copy for.
//!
//! Why a record of its own rather than each worker's engine subtracting the loss when the
//! socket reports it: the copy was counted by one worker's engine, but the loss may reach
//! another (an AF_XDP TX queue is shared when there are more workers than queues, an archive
//! by every worker), and it may arrive after a reload replaced that engine and renumbered the
//! outputs. Recorded by output name and moved from `tx` to `tx_dropped` in the one merged
//! report, it is exact in all of these cases.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use vxspan_core::{Report, TxDrop};

#[derive(Debug, Default)]
pub struct TxLosses(Mutex<Book>);

#[derive(Debug, Default)]
struct Book {
    names: Vec<String>,
    lost: BTreeMap<u16, Lost>,
}

/// Packets and bytes lost by one output, per [`TxDrop`] reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lost {
    pub packets: [u64; TxDrop::ALL.len()],
    pub bytes: [u64; TxDrop::ALL.len()],
}

impl TxLosses {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id under which copies for output `name` are recorded (the same for every call with
    /// that name). Ids beyond u16 (65,536 distinct output names) share the last one.
    pub fn id(&self, name: &str) -> u16 {
        let mut b = self.book();
        if let Some(i) = b.names.iter().position(|n| n == name) {
            return i as u16;
        }
        if b.names.len() > usize::from(u16::MAX) {
            return u16::MAX;
        }
        b.names.push(name.to_owned());
        (b.names.len() - 1) as u16
    }

    /// Records `packets` copies (`bytes` in all) of output `id` lost for `reason`.
    pub fn add(&self, id: u16, reason: TxDrop, packets: u64, bytes: u64) {
        if packets == 0 {
            return;
        }
        let mut b = self.book();
        let l = b.lost.entry(id).or_default();
        l.packets[reason as usize] += packets;
        l.bytes[reason as usize] += bytes;
    }

    /// What output `name` lost so far.
    pub fn of(&self, name: &str) -> Lost {
        let b = self.book();
        b.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| b.lost.get(&(i as u16)).cloned())
            .unwrap_or_default()
    }

    /// Moves the lost copies of each output from its `tx` counters to its `tx_dropped` ones.
    pub fn apply(&self, report: &mut Report) {
        let b = self.book();
        for (id, lost) in &b.lost {
            let Some(p) = b
                .names
                .get(usize::from(*id))
                .and_then(|n| report.interfaces.get_mut(n))
            else {
                continue;
            };
            for r in TxDrop::ALL {
                let (n, bytes) = (lost.packets[r as usize], lost.bytes[r as usize]);
                if n == 0 {
                    continue;
                }
                // A copy is counted as sent before the kernel can drop it; a report taken
                // while another worker is between the two may briefly see fewer sends.
                p.tx_packets = p.tx_packets.saturating_sub(n);
                p.tx_bytes = p.tx_bytes.saturating_sub(bytes);
                p.tx_dropped_packets += n;
                p.tx_dropped_bytes += bytes;
                *p.tx_drop_reasons.entry(r.as_str().to_owned()).or_default() += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_name() {
        let l = TxLosses::default();
        let a = l.id("tool_a");
        let b = l.id("tool_b");
        assert_ne!(a, b);
        assert_eq!(l.id("tool_a"), a);
    }

    #[test]
    fn losses_move_copies_from_sent_to_dropped_per_output() {
        let losses = TxLosses::default();
        let (a, b) = (losses.id("tool_a"), losses.id("tool_b"));
        losses.add(a, TxDrop::QueueFull, 2, 200);
        losses.add(a, TxDrop::LinkDown, 1, 100);
        losses.add(b, TxDrop::MtuExceeded, 1, 9000);
        let mut r = Report::default();
        for name in ["tool_a", "tool_b"] {
            r.interfaces.insert(
                name.into(),
                vxspan_core::counters::PortReport {
                    tx_packets: 10,
                    tx_bytes: 10_000,
                    ..Default::default()
                },
            );
        }
        losses.apply(&mut r);
        let p = &r.interfaces["tool_a"];
        assert_eq!((p.tx_packets, p.tx_bytes), (7, 9_700));
        assert_eq!((p.tx_dropped_packets, p.tx_dropped_bytes), (3, 300));
        assert_eq!(p.tx_drop_reasons["queue_full"], 2);
        assert_eq!(p.tx_drop_reasons["link_down"], 1);
        let p = &r.interfaces["tool_b"];
        assert_eq!((p.tx_packets, p.tx_dropped_packets), (9, 1));
        assert_eq!(p.tx_drop_reasons["mtu_exceeded"], 1);
        assert_eq!(losses.of("tool_b").packets[TxDrop::MtuExceeded as usize], 1);
    }
}
