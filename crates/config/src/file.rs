//! Reading the files a configuration is made of: the configuration itself and
//! `management.hash_key_file`. Only regular files are read, and only up to a limit, so that a
//! FIFO, a directory or a device named by mistake is refused instead of blocking the loader (a
//! FIFO's `open` waits for a writer) or feeding it without end.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// The largest configuration file `load` reads: far above any real configuration (a few KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The largest hash key file: 32 hexadecimal digits and white space.
pub(crate) const MAX_HASH_KEY_BYTES: u64 = 4 << 10;

/// A regular file opened for reading, at most `limit` bytes long when it was opened.
pub(crate) struct Regular {
    file: File,
    /// The metadata of the opened file (not of whatever the path names now).
    pub(crate) meta: Metadata,
    limit: u64,
    what: &'static str,
}

/// Opens `path` (following symbolic links) if it is a regular file of at most `limit` bytes;
/// `what` names the kind of file in messages ("configuration file"). The error is the problem
/// alone, without the file name.
pub(crate) fn open_regular(path: &Path, limit: u64, what: &'static str) -> Result<Regular, String> {
    // Checked before opening: a FIFO is refused without being opened, so nothing blocks.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    check(&meta, limit, what)?;
    // O_NONBLOCK: should the path have become a FIFO since, the open does not wait for a
    // writer (the check below refuses it); a regular file reads as usual.
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    // And again on what was opened, in case the path was replaced in between.
    let meta = file.metadata().map_err(|e| e.to_string())?;
    check(&meta, limit, what)?;
    Ok(Regular {
        file,
        meta,
        limit,
        what,
    })
}

impl Regular {
    /// The file's text. Reads at most `limit + 1` bytes, so a file that grew after it was opened
    /// (or whose size the metadata does not tell, as in /proc) is refused all the same.
    pub(crate) fn read_to_string(self) -> Result<String, String> {
        let mut buf = Vec::new();
        self.file
            .take(self.limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        if buf.len() as u64 > self.limit {
            return Err(too_large(
                &format!("more than {} bytes", self.limit),
                self.limit,
                self.what,
            ));
        }
        // The words of `std::fs::read_to_string`, which `load` used before.
        String::from_utf8(buf).map_err(|_| "stream did not contain valid UTF-8".to_owned())
    }
}

fn check(meta: &Metadata, limit: u64, what: &str) -> Result<(), String> {
    if !meta.is_file() {
        return Err(match kind(meta) {
            Some(k) => format!("{k}, not a regular file"),
            None => "not a regular file".to_owned(),
        });
    }
    if meta.len() > limit {
        return Err(too_large(&format!("{} bytes", meta.len()), limit, what));
    }
    Ok(())
}

fn too_large(size: &str, limit: u64, what: &str) -> String {
    let limit = match limit {
        l if l % (1 << 20) == 0 => format!("{} MiB", l >> 20),
        l if l % (1 << 10) == 0 => format!("{} KiB", l >> 10),
        l => format!("{l} bytes"),
    };
    format!("{size}: a {what} may have at most {limit}")
}

/// What a file that is not a regular file is.
fn kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc files are regular files of size 0 that read as more: the limit holds on what is
    /// read, not on what the metadata says.
    #[cfg(target_os = "linux")]
    #[test]
    fn limit_holds_on_bytes_read() {
        let p = Path::new("/proc/self/status");
        let f = open_regular(p, 16, "test file").unwrap();
        assert_eq!(f.meta.len(), 0);
        assert_eq!(
            f.read_to_string().unwrap_err(),
            "more than 16 bytes: a test file may have at most 16 bytes"
        );
        let text = open_regular(p, 1 << 20, "test file")
            .unwrap()
            .read_to_string()
            .unwrap();
        assert!(text.starts_with("Name:"), "{text}");
    }

    #[test]
    fn limits_in_words() {
        assert_eq!(
            too_large("5 bytes", MAX_CONFIG_BYTES, "configuration file"),
            "5 bytes: a configuration file may have at most 1 MiB"
        );
        assert_eq!(
            too_large("5 bytes", MAX_HASH_KEY_BYTES, "hash key file"),
            "5 bytes: a hash key file may have at most 4 KiB"
        );
    }
}
