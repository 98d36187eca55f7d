//! Waking a thread that sleeps in `poll(2)`: a pipe whose read end is among its descriptors,
//! and a flag so that at most one byte is ever in the pipe (waking is a syscall only when the
//! sleeper has not been woken yet, and the pipe cannot fill).

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Waker {
    pipe: (PipeReader, PipeWriter),
    /// A wake-up byte is in the pipe (or about to be).
    woken: AtomicBool,
}

impl Waker {
    pub fn new() -> std::io::Result<Waker> {
        Ok(Waker {
            pipe: std::io::pipe()?,
            woken: AtomicBool::new(false),
        })
    }

    /// Wakes the sleeper (again only once it has taken the last wake-up).
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) && (&self.pipe.1).write(&[1]).is_err() {
            // No byte went in: the next wake tries again.
            self.woken.store(false, Ordering::Release);
        }
    }

    /// The descriptor the sleeper polls for reading.
    pub fn fd(&self) -> i32 {
        self.pipe.0.as_raw_fd()
    }

    /// Takes the wake-up byte out of the pipe; call it when poll found [`Waker::fd`] readable
    /// (the byte is there, or is being written: the read does not wait longer than that).
    pub fn woke(&self) {
        if self.woken.load(Ordering::Acquire) {
            let mut b = [0u8; 8];
            let _ = (&self.pipe.0).read(&mut b);
            self.woken.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_at_most_and_woke_takes_it() {
        let w = Waker::new().unwrap();
        for _ in 0..100_000 {
            w.wake(); // would block once the pipe is full if each wake wrote
        }
        let mut fds = [libc_pollfd(w.fd())];
        assert_eq!(poll(&mut fds), 1);
        w.woke();
        assert_eq!(poll(&mut fds), 0);
        w.wake();
        assert_eq!(poll(&mut fds), 1);
    }

    fn libc_pollfd(fd: i32) -> libc::pollfd {
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }
    }

    fn poll(fds: &mut [libc::pollfd]) -> i32 {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) }
    }
}
