//! vxspan configuration: the VxSPAN JSON form (CONFIG.md section 1, fixed) and the native schema
//! (TOML or JSON, section 2), parsed and validated into a [`Config`] that `vxspan-core` compiles.
//!
//! Every error names the file, the key path inside it (`interfaces.eth1.redirect_map."5000"`,
//! `rules[2].to[0]`) and the problem. Parsing is strict: unknown keys, duplicate keys, values out
//! of range, references to undefined ports, duplicate inputs and loops are all errors.
#![deny(unsafe_code)]

mod checks;
mod file;
mod limits;
mod model;
mod path;
mod raw;
mod tunnel;
mod validate;

pub use limits::{parse_hash_key, CounterLimits, HASH_KEY_LEN};
pub use model::*;
pub use path::KeyPath;
pub use tunnel::{
    prefixes_contain, Decap, DecapPorts, Encap, Listen, Mpls, MplsPayloadKind, Outer, Oversize,
    Reassembly, TunnelKind, TUNNEL_TYPES,
};

use std::path::{Path, PathBuf};

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{}", file.display(), if path.is_empty() { String::new() } else { format!("{path}: ") }, message)]
pub struct ConfigError {
    /// The file the configuration came from.
    pub file: PathBuf,
    /// The key path inside the file (empty for errors about the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Toml,
}

impl Syntax {
    /// `.toml` files are TOML and `.json` files JSON; otherwise a document starting with `{` is
    /// JSON and anything else TOML.
    pub fn detect(path: &Path, text: &str) -> Syntax {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Syntax::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Syntax::Json,
            _ if text.trim_start().starts_with('{') => Syntax::Json,
            _ => Syntax::Toml,
        }
    }
}

/// Reads and validates the configuration file at `path`: a regular file (symbolic links
/// followed) of at most 1 MiB. A FIFO, a directory or a device is refused without being read.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse(&text, Syntax::detect(path, &text), path)
}

/// The text of the configuration file `path`, read as [`load`] reads it (a regular file of at
/// most 1 MiB), for a caller that keeps the text it parsed.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    file::open_regular(path, file::MAX_CONFIG_BYTES, "configuration file")
        .and_then(file::Regular::read_to_string)
        .map_err(|e| ConfigError {
            file: path.to_owned(),
            path: String::new(),
            message: format!("cannot read: {e}"),
        })
}

/// Parses and validates configuration text; `file` is only used in error messages.
pub fn parse(text: &str, syntax: Syntax, file: &Path) -> Result<Config, ConfigError> {
    let raw = raw::deserialize(text, syntax).map_err(|(path, message)| ConfigError {
        file: file.to_owned(),
        path,
        message,
    })?;
    validate::validate(raw, file).map_err(|(path, message)| ConfigError {
        file: file.to_owned(),
        path: path.to_string(),
        message,
    })
}
