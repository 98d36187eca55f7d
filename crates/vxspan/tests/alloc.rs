//! Allocation-free steady state on hostile traffic (issue #15): after one pass of the hostile
//! corpus (tests/hostile) through the engine with its decap-everything configuration, which
//! warms every buffer, pool and table, a second pass of the same 9,000-odd frames allocates
//! nothing. A counting allocator counts the allocations made on this test's thread while the
//! pass runs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only an
// atomic and a const-initialised thread-local (neither allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which System shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts copies without keeping them.
struct Null(u64);

impl Sink for Null {
    fn transmit(&mut self, _: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0 += f.data.len() as u64;
        Ok(())
    }
}

#[test]
fn the_hostile_corpus_allocates_nothing_once_warm() {
    let root = common::root();
    let cfg = vxspan_config::load(&root.join("tests/hostile/decap-all.toml")).unwrap();
    let plan = Arc::new(Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap());
    let frames = common::read_capture(&root.join("tests/hostile/hostile.pcap"));
    assert!(frames.len() > 9000);
    let mut e = Engine::new(plan);
    let mut sink = Null(0);
    let pass = |e: &mut Engine, sink: &mut Null, round: u64| {
        for (data, wire, ts) in &frames {
            e.process(
                0,
                RxFrame {
                    data,
                    wire_len: *wire,
                    // Each pass later than the last, so timeouts run as in the first.
                    ts: ts + round * 3_600_000_000_000,
                },
                sink,
            );
        }
    };
    pass(&mut e, &mut sink, 0);
    pass(&mut e, &mut sink, 1);
    COUNTING.with(|c| c.set(true));
    pass(&mut e, &mut sink, 2);
    COUNTING.with(|c| c.set(false));
    let n = ALLOCS.load(Ordering::Relaxed);
    let p = &e.counters().ports[0];
    assert_eq!(p.rx_packets, 3 * frames.len() as u64);
    assert_eq!(p.rx_packets, p.forwarded_packets + p.dropped_packets);
    assert_eq!(
        n,
        0,
        "{n} allocations in a warm pass of {} frames",
        frames.len()
    );
}
