//! In-memory ports: frames from a vector, copies into a vector. For the demo and for tests.

use crate::{Batch, RecvStatus, RxPort, TxPort};
use std::io;
use vxspan_core::{TxDrop, TxFrame};

/// Frames held in memory: (bytes, wire length, timestamp in ns).
pub struct MemoryInput {
    frames: std::vec::IntoIter<(Vec<u8>, u32, u64)>,
}

impl MemoryInput {
    pub fn new(frames: Vec<(Vec<u8>, u32, u64)>) -> Self {
        MemoryInput {
            frames: frames.into_iter(),
        }
    }
}

impl RxPort for MemoryInput {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus> {
        for _ in 0..max {
            match self.frames.next() {
                Some((d, wire_len, ts)) => batch.push(&d, wire_len, ts),
                None => return Ok(RecvStatus::End),
            }
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
