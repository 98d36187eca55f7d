//! `load` and `management.hash_key_file` read regular files only, and only up to a limit (1 MiB
//! for the configuration, 4 KiB for the key): a FIFO, a directory or a device is refused without
//! blocking, a larger file without reading more than the limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;
use vxspan_config::{load, Config, ConfigError};

const CONFIG_LIMIT: usize = 1 << 20;
const KEY_LIMIT: usize = 4096;

const RULES: &str = "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\n";
const KEY: &str = "00112233445566778899aabbccddeeff";

/// A fresh directory per test (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vxspan-load-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A TOML configuration of exactly `len` bytes: `text`, then a comment padding it out.
fn padded(text: &str, len: usize) -> String {
    let mut s = format!("{text}#");
    s.push_str(&"x".repeat(len - s.len() - 1));
    s.push('\n');
    assert_eq!(s.len(), len);
    s
}

/// Runs `load` on another thread so that a loader blocking on a FIFO fails the test instead of
/// hanging it.
fn load_or_block(path: &Path) -> Result<Config, ConfigError> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_owned();
    std::thread::spawn(move || tx.send(load(&p)).unwrap());
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r,
        Err(_) => {
            // Give the blocked reader a writer so the thread ends, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(path);
            panic!("load({}) blocked", path.display());
        }
    }
}

#[track_caller]
fn assert_refused(r: Result<Config, ConfigError>, file: &Path, needle: &str) {
    let e = r.expect_err("should be refused");
    assert_eq!(e.file, file, "{e}");
    assert!(e.message.contains(needle), "{e:?} lacks {needle:?}");
    assert!(
        e.to_string().starts_with(&file.display().to_string()),
        "{e}"
    );
}

#[test]
fn config_fifo_is_refused_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("c.toml");
    mkfifo(&fifo);
    assert_refused(
        load_or_block(&fifo),
        &fifo,
        "cannot read: a FIFO, not a regular file",
    );
    // Through a symbolic link too: the link is followed before anything is opened.
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    assert_refused(load_or_block(&link), &link, "a FIFO, not a regular file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_directory_and_device_are_refused() {
    let dir = scratch("dir");
    let sub = dir.join("c.toml");
    std::fs::create_dir(&sub).unwrap();
    assert_refused(
        load_or_block(&sub),
        &sub,
        "cannot read: a directory, not a regular file",
    );
    let null = Path::new("/dev/null");
    assert_refused(
        load_or_block(null),
        null,
        "cannot read: a character device, not a regular file",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_size_limit() {
    let dir = scratch("size");
    let cfg = dir.join("c.toml");
    // Exactly the limit: loads.
    std::fs::write(&cfg, padded(RULES, CONFIG_LIMIT)).unwrap();
    let c = load(&cfg).unwrap();
    assert_eq!(c.rules.len(), 1);
    // One byte more: refused, naming the size and the limit.
    std::fs::write(&cfg, padded(RULES, CONFIG_LIMIT + 1)).unwrap();
    assert_refused(
        load(&cfg),
        &cfg,
        "cannot read: 1048577 bytes: a configuration file may have at most 1 MiB",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_errors_otherwise_unchanged() {
    let dir = scratch("plain");
    let missing = dir.join("missing.toml");
    assert_refused(load(&missing), &missing, "cannot read: No such file");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, b"# \xff\n").unwrap();
    assert_refused(
        load(&cfg),
        &cfg,
        "cannot read: stream did not contain valid UTF-8",
    );
    // A symbolic link to a regular file is followed.
    std::fs::write(&cfg, RULES).unwrap();
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&cfg, &link).unwrap();
    assert_eq!(load(&link).unwrap().rules.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes the configuration naming `key` as its hash key file.
fn key_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!("{RULES}[management]\nhash_key_file = \"key\"\n"),
    )
    .unwrap();
    cfg
}

fn write_key(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[track_caller]
fn assert_key_refused(cfg: &Path, key: &Path, needle: &str) {
    let e = load_or_block(cfg).expect_err("should be refused");
    assert_eq!(e.file, cfg, "{e}");
    assert_eq!(e.path, "management.hash_key_file", "{e}");
    let want = format!("{}: {needle}", key.display());
    assert!(e.message.contains(&want), "{e:?} lacks {want:?}");
}

#[test]
fn hash_key_file_must_be_regular() {
    let dir = scratch("key-kind");
    let cfg = key_config(&dir);
    let key = dir.join("key");
    mkfifo(&key);
    assert_key_refused(&cfg, &key, "a FIFO, not a regular file");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    assert_key_refused(&cfg, &key, "a directory, not a regular file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hash_key_file_size_limit() {
    let dir = scratch("key-size");
    let cfg = key_config(&dir);
    let key = dir.join("key");
    // Exactly the limit (the key and white space): loads.
    write_key(&key, &format!("{KEY}{}", " ".repeat(KEY_LIMIT - KEY.len())));
    assert_eq!(load(&cfg).unwrap().hash_key.unwrap()[..2], [0x00, 0x11]);
    write_key(
        &key,
        &format!("{KEY}{}", " ".repeat(KEY_LIMIT + 1 - KEY.len())),
    );
    assert_key_refused(
        &cfg,
        &key,
        "4097 bytes: a hash key file may have at most 4 KiB",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
