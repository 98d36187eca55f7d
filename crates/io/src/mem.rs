//! In-memory ports: frames from a vector, copies into a vector. For the demo and for tests.

use crate::{Batch, FrameSource, RecvStatus, RxPort, TxPort};
use std::io;
use vxspan_core::RxFrame;
use vxspan_core::{TxDrop, TxFrame};

/// Frames held in memory: (bytes, wire length, timestamp in ns).
pub struct MemoryInput {
    frames: Vec<(Vec<u8>, u32, u64)>,
    /// The next frame `recv` hands out, or one past the current frame of `FrameSource`.
    next: usize,
}

impl MemoryInput {
    pub fn new(frames: Vec<(Vec<u8>, u32, u64)>) -> Self {
        MemoryInput { frames, next: 0 }
    }
}

impl FrameSource for MemoryInput {
    fn advance(&mut self) -> io::Result<bool> {
        if self.next >= self.frames.len() {
            return Ok(false);
        }
        self.next += 1;
        Ok(true)
    }

    fn current(&self) -> RxFrame<'_> {
        let (d, wire_len, ts) = &self.frames[self
            .next
            .saturating_sub(1)
            .min(self.frames.len().saturating_sub(1))];
        RxFrame {
            data: d,
            wire_len: *wire_len,
            ts: *ts,
        }
    }
}

impl RxPort for MemoryInput {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus> {
        for _ in 0..max {
            match self.frames.get(self.next) {
                Some((d, wire_len, ts)) => batch.push(d, *wire_len, *ts),
                None => return Ok(RecvStatus::End),
            }
            self.next += 1;
        }
        Ok(RecvStatus::Ok)
    }
}

/// Keeps every frame sent: (bytes, wire length, timestamp).
#[derive(Debug, Default)]
pub struct MemoryOutput {
    pub frames: Vec<(Vec<u8>, u32, u64)>,
}

impl TxPort for MemoryOutput {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.frames.push((f.data.to_vec(), f.wire_len, f.ts));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
