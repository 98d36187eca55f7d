//! Archive file names: expanding a `path` pattern, and recognising the names a pattern produces.
//!
//! A pattern expands `%Y %m %d %H %M %S` (UTC, from a packet time), `%N` (the file's sequence
//! number, decimal without leading zeros) and `%%`; any other `%x` stays as written. When the
//! name a pattern without `%N` produces is taken, the writer inserts `.K` (K = 1, 2, …) before
//! the extension of the file name (`mirror-20231114T221320.pcapng` →
//! `mirror-20231114T221320.1.pcapng`); the extension is what follows the file name's last
//! literal `.` with no field after it, and without one the suffix goes at the end.
//!
//! [`Pattern::matches`] accepts exactly the file names [`Pattern::expand`] can produce (each
//! field's width and range, `%N` without leading zeros, the `.K` suffix only for patterns
//! without `%N`), so the writer never mistakes a file of another shape for one of its own.

use std::path::PathBuf;

/// Civil date and time (UTC) of `ns` nanoseconds since the Unix epoch (Howard Hinnant's
/// days-to-civil algorithm).
pub(super) fn civil(ns: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// Expands `%Y %m %d %H %M %S` (from `ts`, UTC), `%N` (the file's sequence number) and `%%`.
pub fn file_name(pattern: &str, ts: u64, seq: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ts);
    let mut out = String::with_capacity(pattern.len() + 16);
    for t in tokens(pattern) {
        match t {
            Tok::Lit(c) => out.push(c),
            Tok::Field('Y') => out += &format!("{y:04}"),
            Tok::Field('m') => out += &format!("{mo:02}"),
            Tok::Field('d') => out += &format!("{d:02}"),
            Tok::Field('H') => out += &format!("{h:02}"),
            Tok::Field('M') => out += &format!("{mi:02}"),
            Tok::Field('S') => out += &format!("{s:02}"),
            Tok::Field(_) => out += &seq.to_string(),
            Tok::Suffix => {}
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A character written as is (`%%` and unknown `%x` included).
    Lit(char),
    /// One of `Y m d H M S N`.
    Field(char),
    /// Where the uniqueness suffix `.K` goes (in [`Pattern::name`] only).
    Suffix,
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(Tok::Lit(c));
            continue;
        }
        match chars.next() {
            Some(f @ ('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'N')) => out.push(Tok::Field(f)),
            Some('%') => out.push(Tok::Lit('%')),
            Some(other) => {
                out.push(Tok::Lit('%'));
                out.push(Tok::Lit(other));
            }
            None => out.push(Tok::Lit('%')),
        }
    }
    out
}

/// What a matching file name says: its time fields, `%N` and suffix, in the order that sorts
/// the names one writer produces from oldest to newest (fields missing from the pattern are 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub y: u32,
    pub mo: u32,
    pub d: u32,
    pub h: u32,
    pub mi: u32,
    pub s: u32,
    pub n: u64,
    pub suffix: u64,
}

/// An archive's `path` pattern, split into the directory part (expanded as is) and the file
/// name part (expanded, and matched against directory entries).
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    dir: String,
    name: Vec<Tok>,
    /// `%N` anywhere in the pattern: a taken name is resolved by the next number, not a suffix.
    pub numbered: bool,
    /// `%N` in the file name part: the numbers of existing files can be read from their names.
    pub n_in_name: bool,
}

impl Pattern {
    pub fn new(pattern: &str) -> Self {
        let (dir, name) = match pattern.rfind('/') {
            Some(i) => (&pattern[..=i], &pattern[i + 1..]),
            None => ("", pattern),
        };
        let numbered = tokens(pattern).contains(&Tok::Field('N'));
        let mut name = tokens(name);
        let n_in_name = name.contains(&Tok::Field('N'));
        if !numbered {
            // Before the last literal '.' that has no field after it (and does not start the
            // name); otherwise at the end.
            let last_field = name.iter().rposition(|t| matches!(t, Tok::Field(_)));
            let dot = name
                .iter()
                .rposition(|t| *t == Tok::Lit('.'))
                .filter(|&i| i > 0 && last_field.is_none_or(|f| f < i));
            name.insert(dot.unwrap_or(name.len()), Tok::Suffix);
        }
        Pattern {
            dir: dir.to_owned(),
            name,
            numbered,
            n_in_name,
        }
    }

    /// The path for packet time `ts`, sequence number `seq`, and uniqueness suffix `suffix`
    /// (0 = none; only used by patterns without `%N`).
    pub fn expand(&self, ts: u64, seq: u64, suffix: u64) -> PathBuf {
        let mut s = file_name(&self.dir, ts, seq);
        let (y, mo, d, h, mi, sec) = civil(ts);
        for t in &self.name {
            match *t {
                Tok::Lit(c) => s.push(c),
                Tok::Field('Y') => s += &format!("{y:04}"),
                Tok::Field('m') => s += &format!("{mo:02}"),
                Tok::Field('d') => s += &format!("{d:02}"),
                Tok::Field('H') => s += &format!("{h:02}"),
                Tok::Field('M') => s += &format!("{mi:02}"),
                Tok::Field('S') => s += &format!("{sec:02}"),
                Tok::Field(_) => s += &seq.to_string(),
                Tok::Suffix if suffix > 0 => s += &format!(".{suffix}"),
                Tok::Suffix => {}
            }
        }
        PathBuf::from(s)
    }

    /// Whether `name` (a file name, no directory) is one this pattern's file name part can
    /// produce, and what it says.
    pub fn matches(&self, name: &str) -> Option<Key> {
        let mut key = Key::default();
        match_toks(&self.name, name.as_bytes(), &mut key).then_some(key)
    }
}

/// A decimal number of exactly `width` digits at the start of `s`.
fn fixed(s: &[u8], width: usize) -> Option<u32> {
    let digits = s.get(..width)?;
    digits.iter().all(u8::is_ascii_digit).then(|| {
        digits
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    })
}

/// Every way a run of digits without a leading zero (or a lone `0`) can start `s`, longest
/// first: (its value, its length).
fn numbers(s: &[u8]) -> impl Iterator<Item = (u64, usize)> + '_ {
    let run = s.iter().take_while(|c| c.is_ascii_digit()).count().min(20);
    (1..=run).rev().filter_map(move |len| {
        if len > 1 && s[0] == b'0' {
            return None;
        }
        std::str::from_utf8(&s[..len])
            .ok()?
            .parse()
            .ok()
            .map(|n| (n, len))
    })
}

fn match_toks(toks: &[Tok], s: &[u8], key: &mut Key) -> bool {
    let Some((t, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match *t {
        Tok::Lit(c) => {
            let mut buf = [0u8; 4];
            let c = c.encode_utf8(&mut buf).as_bytes();
            s.starts_with(c) && match_toks(rest, &s[c.len()..], key)
        }
        Tok::Field('N') => numbers(s).any(|(n, len)| {
            key.n = n;
            match_toks(rest, &s[len..], key)
        }),
        Tok::Field(f) => {
            let (width, range, slot) = match f {
                'Y' => (4, 0..=9999, &mut key.y),
                'm' => (2, 1..=12, &mut key.mo),
                'd' => (2, 1..=31, &mut key.d),
                'H' => (2, 0..=23, &mut key.h),
                'M' => (2, 0..=59, &mut key.mi),
                _ => (2, 0..=59, &mut key.s),
            };
            match fixed(s, width).filter(|v| range.contains(v)) {
                Some(v) => {
                    *slot = v;
                    match_toks(rest, &s[width..], key)
                }
                None => false,
            }
        }
        Tok::Suffix => {
            if let Some(after) = s.strip_prefix(b".") {
                let found = numbers(after).filter(|&(n, _)| n > 0).any(|(n, len)| {
                    key.suffix = n;
                    match_toks(rest, &after[len..], key)
                });
                if found {
                    return true;
                }
            }
            key.suffix = 0;
            match_toks(rest, s, key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z
    const TS: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn names() {
        assert_eq!(
            file_name("a-%Y%m%dT%H%M%S-%N.pcapng", TS, 3),
            "a-20231114T221320-3.pcapng"
        );
        assert_eq!(file_name("%%%Y", 0, 0), "%1970");
        assert_eq!(file_name("100%x%", 0, 0), "100%x%");
        assert_eq!(civil(951_782_400 * 1_000_000_000), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn suffixes_go_before_the_extension() {
        let p = Pattern::new("cap/%Y%m%d/m-%H%M%S.pcapng");
        assert!(!p.numbered);
        assert_eq!(
            p.expand(TS, 0, 0),
            PathBuf::from("cap/20231114/m-221320.pcapng")
        );
        assert_eq!(
            p.expand(TS, 0, 2),
            PathBuf::from("cap/20231114/m-221320.2.pcapng")
        );
        let p = Pattern::new("x.%H");
        assert_eq!(p.expand(TS, 0, 1), PathBuf::from("x.22.1"));
        let p = Pattern::new(".hidden");
        assert_eq!(p.expand(TS, 0, 1), PathBuf::from(".hidden.1"));
        // With %N the number moves on instead.
        let p = Pattern::new("d-%N/a.pcapng");
        assert!(p.numbered && !p.n_in_name);
        assert_eq!(p.expand(TS, 7, 3), PathBuf::from("d-7/a.pcapng"));
    }

    #[test]
    fn matches_exactly_what_expand_produces() {
        let p = Pattern::new("dir/a-%Y%m%dT%H%M%S.pcapng");
        for suffix in [0, 1, 12] {
            let path = p.expand(TS, 0, suffix);
            let name = path.file_name().unwrap().to_str().unwrap();
            let k = p.matches(name).unwrap();
            assert_eq!((k.y, k.mo, k.d, k.h, k.mi, k.s), (2023, 11, 14, 22, 13, 20));
            assert_eq!(k.suffix, suffix);
        }
        for other in [
            "a-20231114T221320.pcap",
            "a-20231114T221320.0.pcapng",
            "a-20231114T221320.01.pcapng",
            "a-20231114T221320.x.pcapng",
            "a-20231314T221320.pcapng",
            "a-2023111T221320.pcapng",
            "a-20231114T221320.pcapng.bak",
            "b-20231114T221320.pcapng",
        ] {
            assert_eq!(p.matches(other), None, "{other}");
        }
        let p = Pattern::new("a-%N.pcapng");
        assert_eq!(p.matches("a-0.pcapng").map(|k| k.n), Some(0));
        assert_eq!(p.matches("a-41.pcapng").map(|k| k.n), Some(41));
        for other in ["a-01.pcapng", "a-.pcapng", "a-4.1.pcapng", "a-x.pcapng"] {
            assert_eq!(p.matches(other), None, "{other}");
        }
        // A number followed by digits of the literal: backtracking finds the split.
        let p = Pattern::new("%N5");
        assert_eq!(p.matches("1235").map(|k| k.n), Some(123));
        assert!(
            Key {
                n: 2,
                ..Key::default()
            } < Key {
                y: 1,
                ..Key::default()
            }
        );
    }
}
