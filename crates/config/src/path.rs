//! Key paths as users read them: `interfaces.eth1.redirect_map."5000"`, `rules[0].to[1]`.

use core::fmt;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An already formatted path, printed as is.
    Verbatim(String),
    Key(String),
    Index(usize),
}

/// A path to a value inside a configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(Vec<Step>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// A path that was formatted before (kept in a rule for later error messages).
    pub fn verbatim(formatted: &str) -> Self {
        KeyPath(vec![Step::Verbatim(formatted.to_owned())])
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Key(k.to_owned()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Index(i));
        p
    }
}

/// Keys that are plain identifiers are written bare; anything else (numbers, spaces, the empty
/// string) is quoted so the path can be read back without ambiguity.
fn is_bare(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(n) => write!(f, "[{n}]")?,
                Step::Verbatim(s) => f.write_str(s)?,
                Step::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl From<&serde_path_to_error::Path> for KeyPath {
    fn from(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut out = KeyPath::root();
        for seg in p.iter() {
            out = match seg {
                Segment::Seq { index } => out.index(*index),
                Segment::Map { key } => out.key(key),
                Segment::Enum { variant } => out.key(variant),
                Segment::Unknown => out,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_contract() {
        let p = KeyPath::root()
            .key("interfaces")
            .key("eth1")
            .key("redirect_map")
            .key("5000");
        assert_eq!(p.to_string(), "interfaces.eth1.redirect_map.\"5000\"");
        let p = KeyPath::root().key("rules").index(0).key("to").index(1);
        assert_eq!(p.to_string(), "rules[0].to[1]");
        assert_eq!(KeyPath::root().key("").to_string(), "\"\"");
        assert_eq!(KeyPath::root().key(" 10").to_string(), "\" 10\"");
    }
}
