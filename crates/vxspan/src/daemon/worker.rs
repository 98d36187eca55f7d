//! The workers beyond the first: each a thread with its own rings, engine and transmit sockets,
//! reached by the first worker only between two of its batches.

use super::*;
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vxspan_core::{Engine, Report, RxDrop};
use vxspan_io::afpacket::{self, RxRing};
use vxspan_io::{Batch, RxPort};

/// A worker beyond the first: a ring in each shared input's fanout group, its own engine
/// (sharing sampling, dedup, buckets and sequences with the first worker's) and its own
/// transmit sockets.
pub(super) struct Worker {
    pub(super) engine: Engine,
    /// (input, ring).
    pub(super) rings: Vec<(usize, RxRing)>,
    /// The fanout group each ring is in.
    pub(super) groups: Vec<u16>,
    /// AF_XDP sockets this worker reads (input, socket, drops seen so far): the inputs' RX
    /// queues are spread over the workers.
    pub(super) xsks: Vec<Xsk>,
    pub(super) outputs: LiveOutputs,
}

/// An AF_XDP socket feeding the userspace tier: (input, socket, drops counted so far).
pub(super) type Xsk = (usize, vxspan_io::afxdp::XskRx, u64);

/// Counts what AF_XDP sockets could not take (no free frame, ring full) as `ring_overrun` on
/// their input.
pub(super) fn count_xsk_drops(engine: &mut Engine, xsks: &mut [Xsk]) {
    for (i, x, seen) in xsks.iter_mut() {
        if let Ok(d) = x.dropped() {
            if d > *seen {
                engine.count_rx_drop(*i, RxDrop::RingOverrun, d - *seen, 0);
                *seen = d;
            }
        }
        let bad = x.take_invalid_ring_entries();
        if bad > 0 {
            engine.count_rx_drop(*i, RxDrop::InvalidRingEntry, bad, 0);
        }
    }
}

impl Worker {
    /// A worker for the running plan: `first` is the first worker's engine, `ports` its ports.
    /// Rings of `old` that are still in one of the ports' fanout groups are kept (so a change
    /// elsewhere loses none of their frames); `old` is left with the others.
    pub(super) fn new(
        first: &Engine,
        ports: &Ports,
        workers: usize,
        index: usize,
        old: Option<&mut Worker>,
    ) -> Result<Worker> {
        let plan = first.plan();
        let mut kept: Vec<(RxRing, u16)> = Vec::new();
        let mut xsks = Vec::new();
        if let Some(old) = old {
            xsks = std::mem::take(&mut old.xsks);
            let rings = std::mem::take(&mut old.rings);
            let groups = std::mem::take(&mut old.groups);
            for ((i, ring), g) in rings.into_iter().zip(groups) {
                if ports.fanout.contains(&Some(g)) {
                    kept.push((ring, g));
                } else {
                    old.rings.push((i, ring));
                    old.groups.push(g);
                }
            }
        }
        let (mut rings, mut groups) = (Vec::new(), Vec::new());
        for (i, (input, group)) in ports.inputs.iter().zip(&ports.fanout).enumerate() {
            let (LiveInput::Ring(r), Some(id)) = (input, group) else {
                continue;
            };
            let ring = match kept.iter().position(|k| k.1 == *id) {
                Some(k) => kept.swap_remove(k).0,
                None => RxRing::open_with(&r.name, ring_block_size(workers))
                    .and_then(|ring| ring.join_fanout(Some(*id)).map(|_| ring))
                    .with_context(|| format!("a worker's ring on {}", r.name))?,
            };
            rings.push((i, ring));
            groups.push(*id);
        }
        Ok(Worker {
            engine: first.worker(),
            rings,
            groups,
            xsks,
            outputs: ports.outputs.for_worker(plan, index)?,
        })
    }

    /// Reads the rings, batch by batch, until they are empty or the control thread wants the
    /// worker (a reload, a counter read): it waits for at most one batch. A source that fails
    /// is left until the next call.
    pub(super) fn drain(&mut self, batch: &mut Batch, wanted: Option<&AtomicBool>) {
        let sources = self
            .rings
            .iter_mut()
            .map(|(i, r)| (*i, r as &mut dyn RxPort))
            .chain(
                self.xsks
                    .iter_mut()
                    .map(|(i, x, _)| (*i, x as &mut dyn RxPort)),
            );
        for (i, port) in sources {
            let recv = |b: &mut Batch| port.recv(b, BATCH).map(|_| ());
            if let Ok(true) =
                drain_input(&mut self.engine, &mut self.outputs, i, batch, recv, wanted)
            {
                return;
            }
        }
        self.outputs.flush_tx();
    }

    pub(super) fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.rings
            .iter()
            .map(|(_, r)| r.fd())
            .chain(self.xsks.iter().map(|(_, x, _)| x.fd()))
    }

    /// Counts what the rings and AF_XDP sockets dropped (full) as `ring_overrun`.
    pub(super) fn read_ring_stats(&mut self) {
        count_ring_drops(&mut self.engine, self.rings.iter().map(|(i, r)| (*i, r)));
        count_xsk_drops(&mut self.engine, &mut self.xsks);
    }
}

/// Where a worker thread finds its work. The control thread takes the lock between two of the
/// worker's batches to swap its plan or read its counters; `wanted` keeps the worker from
/// taking the lock again first. Afterwards it wakes the worker through a pipe in the worker's
/// poll set: the worker may be waiting on the descriptors it had before (a socket it was just
/// given would otherwise not be read until that wait times out, 100 ms, longer than an AF_XDP
/// ring lasts at 10,000 frames a second).
pub(super) struct WorkerSlot {
    pub(super) worker: Mutex<Option<Worker>>,
    pub(super) wanted: AtomicBool,
    pub(super) wake: crate::wake::Waker,
    /// What the worker counted, as it published it last (every [`PUBLISH_EVERY`], and after
    /// every `with`): counter reads take this, never the worker's lock.
    pub(super) published: Mutex<Published>,
    /// The worker's longest gap between two batches.
    pub(super) gap: GapMeter,
}

/// A worker's counters as published: its engine's report and its AF_XDP sockets' receive
/// counts (input, frames).
#[derive(Default, Clone)]
pub(super) struct Published {
    pub(super) report: Option<Arc<Report>>,
    pub(super) xsks: Vec<(usize, u64)>,
}

/// How often a worker publishes its counters (and reads its rings' kernel statistics).
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The longest time a worker spent between two batches on other work (control requests,
/// reloads, publishing) or waiting for its lock, over the last 10 to 20 seconds.
#[derive(Default)]
pub(super) struct GapMeter {
    cur_us: std::sync::atomic::AtomicU64,
    prev_us: std::sync::atomic::AtomicU64,
}

impl GapMeter {
    pub(super) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.cur_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Starts a new 10-second window (the owner calls it).
    pub(super) fn roll(&self) {
        let cur = self.cur_us.swap(0, Ordering::Relaxed);
        self.prev_us.store(cur, Ordering::Relaxed);
    }

    /// Milliseconds, over this window and the previous one.
    pub(super) fn max_ms(&self) -> f64 {
        let us = self
            .cur_us
            .load(Ordering::Relaxed)
            .max(self.prev_us.load(Ordering::Relaxed));
        us as f64 / 1000.0
    }
}

/// The window of a [`GapMeter`].
pub(super) const GAP_WINDOW: Duration = Duration::from_secs(10);

impl WorkerSlot {
    pub(super) fn new() -> std::io::Result<WorkerSlot> {
        Ok(WorkerSlot {
            worker: Mutex::new(None),
            wanted: AtomicBool::new(false),
            wake: crate::wake::Waker::new()?,
            published: Mutex::new(Published::default()),
            gap: GapMeter::default(),
        })
    }

    /// Publishes what `w` counted (its rings' kernel statistics read first).
    pub(super) fn publish(&self, w: Option<&mut Worker>) {
        let p = match w {
            Some(w) => {
                w.read_ring_stats();
                Published {
                    report: Some(Arc::new(w.engine.report())),
                    xsks: w.xsks.iter().map(|(i, x, _)| (*i, x.received)).collect(),
                }
            }
            None => Published::default(),
        };
        *locked(&self.published) = p;
    }

    /// The counters as last published.
    pub(super) fn snapshot(&self) -> Published {
        locked(&self.published).clone()
    }

    /// Runs `f` on the worker (if it has one) between two of its batches, then wakes it.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Option<Worker>) -> R) -> R {
        self.wanted.store(true, Ordering::Relaxed);
        let mut w = locked(&self.worker);
        let r = f(&mut w);
        // The engine may have been swapped (its counters went to the history): publish the
        // worker as it is now, so no count is in both.
        self.publish(w.as_mut());
        drop(w);
        self.wanted.store(false, Ordering::Relaxed);
        self.wake.wake();
        r
    }
}

/// A worker thread: waits for its rings, drains them, until `stop`.
pub(super) fn worker_loop(slot: Arc<WorkerSlot>, stop: Arc<AtomicBool>) {
    let mut batch = new_batch();
    let mut ready = Vec::new();
    let mut fds = Vec::new();
    let (mut published, mut window) = (Instant::now(), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        let woke = Instant::now();
        // Bounded: the first worker holds the lock for one swap (a reload, a port change).
        for _ in 0..10_000 {
            if !slot.wanted.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        fds.clear();
        fds.push(slot.wake.fd());
        let mut w = locked(&slot.worker);
        slot.gap.record(woke.elapsed());
        if let Some(w) = w.as_mut() {
            w.drain(&mut batch, Some(&slot.wanted));
            fds.extend(w.fds());
        }
        if published.elapsed() >= PUBLISH_EVERY {
            let t = Instant::now();
            slot.publish(w.as_mut());
            published = Instant::now();
            slot.gap.record(t.elapsed());
        }
        drop(w);
        if window.elapsed() >= GAP_WINDOW {
            slot.gap.roll();
            window = Instant::now();
        }
        // A descriptor closed by a swap meanwhile only ends this wait early; a swap wakes it
        // through the pipe (index 0).
        let _ = afpacket::poll_readable(&fds, 100, &mut ready);
        if ready.first() == Some(&0) {
            slot.wake.woke();
        }
    }
}

/// Reads one source of input `input` (`recv` appends a batch) until it has nothing more, each
/// batch through the engine. With `wanted`, it stops after the batch during which the flag was
/// raised and says so (`Ok(true)`).
pub(super) fn drain_input(
    engine: &mut Engine,
    outputs: &mut LiveOutputs,
    input: usize,
    batch: &mut Batch,
    mut recv: impl FnMut(&mut Batch) -> std::io::Result<()>,
    wanted: Option<&AtomicBool>,
) -> std::io::Result<bool> {
    loop {
        batch.clear();
        recv(batch)?;
        if batch.is_empty() {
            return Ok(false);
        }
        engine.process_batch(input, batch.iter(), outputs);
        outputs.flush_tx();
        if wanted.is_some_and(|w| w.load(Ordering::Relaxed)) {
            return Ok(true);
        }
    }
}

/// Counts what receive rings dropped (full) since the last read as `ring_overrun` on their
/// input.
pub(super) fn count_ring_drops<'a>(
    engine: &mut Engine,
    rings: impl Iterator<Item = (usize, &'a RxRing)>,
) {
    for (i, ring) in rings {
        if let Ok((_, drops)) = ring.take_stats() {
            if drops > 0 {
                engine.count_rx_drop(i, RxDrop::RingOverrun, drops, 0);
            }
        }
        let bad = ring.take_invalid_ring_entries();
        if bad > 0 {
            engine.count_rx_drop(i, RxDrop::InvalidRingEntry, bad, 0);
        }
    }
}
