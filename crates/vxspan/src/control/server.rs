//! The control socket: bound with the right mode, removed on exit.
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

pub(crate) struct Control {
    pub(crate) listener: UnixListener,
    path: PathBuf,
}

impl Control {
    pub(crate) fn bind(path: &Path) -> Result<Control> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use: another vxspan is running (use --control to run a second one)",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("control socket {}", path.display()))?;
        // Root-only: the socket reloads the configuration and reads every counter.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Control {
            listener,
            path: path.to_owned(),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
