//! vxspan's I/O back-ends behind one small interface: a port receives batches of frames and
//! sends frames. This crate has the offline back-ends (pcap / pcapng files) and the libpcap
//! filter compiler; the live ones (AF_PACKET, AF_XDP, TAP, tunnel sockets) join them here.
#![deny(unsafe_code)]

pub mod afpacket;
pub mod afxdp;
pub mod archive;
pub mod filter;
pub mod losses;
pub mod mem;
pub mod netdev;
pub mod pcap;
pub mod route;
pub mod tap;
pub mod tunnel;

pub use losses::TxLosses;
use std::io;
pub use vxspan_core::{RxFrame, TxDrop, TxFrame};

/// Frames received in one call, stored back to back in one buffer that is reused.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    frames: Vec<FrameRef>,
}

#[derive(Debug, Clone, Copy)]
struct FrameRef {
    start: usize,
    len: u32,
    wire_len: u32,
    ts: u64,
}

impl Batch {
    pub fn with_capacity(frames: usize, bytes: usize) -> Self {
        Batch {
            data: Vec::with_capacity(bytes),
            frames: Vec::with_capacity(frames),
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held (for batch size limits).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends a frame whose bytes the caller writes into the returned buffer's tail: the
    /// closure gets the data vector and must append exactly the frame.
    pub fn push_with<E>(
        &mut self,
        wire_len: u32,
        ts: u64,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.data.len();
        match fill(&mut self.data) {
            Ok(()) => {
                let len = (self.data.len() - start) as u32;
                self.frames.push(FrameRef {
                    start,
                    len,
                    wire_len,
                    ts,
                });
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    /// Lets `fill` append one frame's bytes to the batch's buffer (given with the offset where
    /// the frame starts) and return its wire length and timestamp; `None` (nothing to add)
    /// undoes whatever it appended. Returns whether a frame was added.
    pub fn append_with<E>(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>, usize) -> Result<Option<(u32, u64)>, E>,
    ) -> Result<bool, E> {
        let start = self.data.len();
        match fill(&mut self.data, start) {
            Ok(Some((wire_len, ts))) => {
                let len = (self.data.len() - start) as u32;
                self.frames.push(FrameRef {
                    start,
                    len,
                    wire_len,
                    ts,
                });
                Ok(true)
            }
            Ok(None) => {
                self.data.truncate(start);
                Ok(false)
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    pub fn push(&mut self, data: &[u8], wire_len: u32, ts: u64) {
        let _ = self.push_with::<()>(wire_len, ts, |v| {
            v.extend_from_slice(data);
            Ok(())
        });
    }

    /// Sets the last frame's wire length to its length (frames received whole).
    pub fn set_last_wire_len_to_len(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            f.wire_len = f.len;
        }
    }

    pub fn get(&self, i: usize) -> Option<RxFrame<'_>> {
        let f = self.frames.get(i)?;
        Some(RxFrame {
            data: &self.data[f.start..f.start + f.len as usize],
            wire_len: f.wire_len,
            ts: f.ts,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = RxFrame<'_>> + '_ {
        (0..self.frames.len()).filter_map(|i| self.get(i))
    }
}

/// What a receive call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStatus {
    /// Frames were appended (possibly none, for a live port with nothing pending).
    Ok,
    /// The source is exhausted (end of a capture file).
    End,
}

/// The receive side of a port.
pub trait RxPort {
    /// Appends up to `max` frames to `batch`.
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus>;
}

/// A source of frames read one at a time, each borrowed from the source (no copy): what offline
/// replay reads capture files and in-memory frames through, in timestamp order across sources.
pub trait FrameSource {
    /// Moves to the next frame; `false` at the end.
    fn advance(&mut self) -> io::Result<bool>;
    /// The current frame: valid after `advance` returned true, until the next `advance`.
    fn current(&self) -> RxFrame<'_>;
}

/// The transmit side of a port.
pub trait TxPort {
    /// Sends (or queues) one frame; a frame that cannot be sent is reported with its reason.
    fn send(&mut self, frame: TxFrame<'_>) -> Result<(), TxDrop>;
    /// Pushes queued frames out.
    fn flush(&mut self) -> io::Result<()>;
}
