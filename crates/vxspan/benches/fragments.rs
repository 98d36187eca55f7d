//! The cost of a fragment flood (issue #15): with `max_datagrams = 16384` and the table full,
//! every 8-byte fragment (at a random offset, of a datagram never seen) evicts the oldest
//! datagram. Baseline measured in the same run: plain 64-byte UDP frames through the same
//! engine. Both mutate their frames' source address per batch in the same way, so every
//! fragment is of a new datagram. Target: a fragment at most 3x a plain frame.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::sync::Arc;
use vxspan_core::wire::etherparse::PacketBuilder;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

const CONFIG: &str = r#"
[inputs.in]
interface = "e1"
decap = ["vxlan", "gre"]
reassembly = { max_datagrams = 16384, max_bytes = 67108864 }
[outputs.out]
interface = "e2"
[[rules]]
from = "in"
to = "out"
"#;

struct Null;

impl Sink for Null {
    fn transmit(&mut self, _: usize, _: TxFrame<'_>) -> Result<(), TxDrop> {
        Ok(())
    }
}

fn udp(payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1000, 9999)
        .write(&mut f, &vec![0u8; payload])
        .unwrap();
    f
}

/// 4,096 frames: 8-byte fragments (MF set, random offsets below 64 KiB) or plain frames.
fn batch(fragments: bool) -> Vec<Vec<u8>> {
    let mut rng = vxspan_core::wire::XorShift(0x9e37_79b9_7f4a_7c15);
    (0..4096)
        .map(|i| {
            let mut f = udp(if fragments { 0 } else { 22 });
            if fragments {
                let off = rng.below(8000) as u16;
                f[16..18].copy_from_slice(&28u16.to_be_bytes()); // 20 + 8 bytes
                f[20..22].copy_from_slice(&(0x2000 | off).to_be_bytes());
            }
            f[18..20].copy_from_slice(&(i as u16).to_be_bytes());
            f
        })
        .collect()
}

/// A new source address for every frame of the batch, `round` apart from the last.
fn renumber(frames: &mut [Vec<u8>], round: u32) {
    for (i, f) in frames.iter_mut().enumerate() {
        let src = round.wrapping_mul(4096).wrapping_add(i as u32);
        f[26..30].copy_from_slice(&src.to_be_bytes());
    }
}

fn run(e: &mut Engine, frames: &[Vec<u8>]) {
    for f in frames {
        e.process(
            0,
            RxFrame {
                data: f,
                wire_len: f.len() as u32,
                ts: 1,
            },
            &mut Null,
        );
    }
}

fn fragments(c: &mut Criterion) {
    let cfg =
        vxspan_config::parse(CONFIG, vxspan_config::Syntax::Toml, Path::new("bench")).unwrap();
    let plan = Arc::new(Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap());
    let mut g = c.benchmark_group("fragments");
    g.throughput(Throughput::Elements(4096));
    let mut e = Engine::new(plan.clone());
    let mut frags = batch(true);
    let mut round = 0u32;
    // Fill the table: 16,384 datagrams held.
    for _ in 0..4 {
        renumber(&mut frags, round);
        run(&mut e, &frags);
        round += 1;
    }
    g.bench_function("fragment-8-bytes-table-full", |b| {
        b.iter(|| {
            renumber(&mut frags, round);
            round = round.wrapping_add(1);
            run(&mut e, &frags);
        })
    });
    let mut plain = batch(false);
    let mut p = Engine::new(plan);
    g.bench_function("baseline-plain-frame", |b| {
        b.iter(|| {
            renumber(&mut plain, round);
            round = round.wrapping_add(1);
            run(&mut p, &plain);
        })
    });
    g.finish();
    let r = e.report();
    let ra = &r.reassembly["in"];
    eprintln!(
        "reassembly after the flood: {} evictions, {} held at most",
        ra.evictions, 16384
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = fragments
}
criterion_main!(benches);
