//! Weighted rendezvous (highest random weight) hashing for `to = { balance = [...] }`, in
//! integers only, so that the XDP program (bpf/balance.h) computes the same choice as the
//! userspace tier, bit for bit.
//!
//! Each output is known by a number drawn from its name ([`name_id`]), not by its position in
//! the configuration: adding, removing or reordering outputs moves only the flows of the
//! outputs added or removed, across reloads and edits. For a flow hash `h` (the keyed flow hash
//! of [`crate::hashkey`]) and each output, `x = mix(h ^ name_id)` gives a uniform `u` in (0, 1];
//! the output with the least `-log2(u) / weight` wins (the exponential race: each output wins in
//! proportion to its weight). `-log2(u)` is a 32.32 fixed-point number from a table of
//! `log2(1 + j / 1024)` built with integer arithmetic ([`LOG2_TABLE`]) and linear interpolation.
//! Ties go to the lower name id. Outputs that are down are skipped while another is up.
//!
//! The float formula this replaces (`-w / ln(u)` over positions) chose differently: a
//! configuration's flows moved once, at the upgrade to this version (docs/config.md).

use std::sync::LazyLock;

/// One output a balanced rule may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The output's index in the plan.
    pub output: usize,
    /// Its weight (1 to 1000).
    pub weight: u32,
    /// [`name_id`] of its name.
    pub name_id: u64,
}

/// The number an output is known by in the rendezvous: XXH3 of its name.
pub fn name_id(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// Entries of [`LOG2_TABLE`] (2^10 intervals).
pub const LOG2_BITS: u32 = 10;

/// `log2(1 + j / 1024)` in 32.32 fixed point for j in 0..=1024, each from the bit-by-bit
/// algorithm on 2.62 fixed point (squaring; no floating point, so every build agrees). The XDP
/// loader writes this table into the program's `log2tab` map.
pub static LOG2_TABLE: LazyLock<[u64; (1 << LOG2_BITS) + 1]> = LazyLock::new(|| {
    let mut t = [0u64; (1 << LOG2_BITS) + 1];
    for (j, e) in t.iter_mut().enumerate() {
        // v = 1 + j/1024 in 2.62 fixed point.
        let mut v: u128 = ((1u128 << LOG2_BITS) + j as u128) << (62 - LOG2_BITS);
        let mut r = 0u64;
        if j == 1 << LOG2_BITS {
            r = 1 << 32;
        } else {
            for i in 1..=32 {
                v = (v * v) >> 62;
                if v >= 2 << 62 {
                    v >>= 1;
                    r |= 1 << (32 - i);
                }
            }
        }
        *e = r;
    }
    t
});

/// log2(m) in 32.32 fixed point, m >= 1.
pub fn log2_q32(m: u64) -> u64 {
    let k = 63 - u64::from(m.max(1).leading_zeros());
    // The bits below the leading one, left-aligned.
    let f = if k == 0 { 0 } else { m << (64 - k) };
    let j = (f >> (64 - LOG2_BITS)) as usize;
    let r = (f >> (64 - LOG2_BITS - 22)) & ((1 << 22) - 1);
    let (a, b) = (LOG2_TABLE[j], LOG2_TABLE[j + 1]);
    (k << 32) + a + (((b - a) * r) >> 22)
}

/// splitmix64's finalizer: every bit of the input moves every bit of the output.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The output's key for flow `flow`: the least wins.
pub fn key(flow: u64, c: &Choice) -> u64 {
    let m = (mix(flow ^ c.name_id) >> 11) + 1; // 1 ..= 2^53: u = m / 2^53
    ((53u64 << 32) - log2_q32(m)) / u64::from(c.weight.max(1))
}

/// The output flow `flow` goes to among `choices` (not empty), skipping outputs `up` says are
/// down while one is up.
pub fn choose(flow: u64, choices: &[Choice], up: impl Fn(usize) -> bool) -> usize {
    let any_up = choices.iter().any(|c| up(c.output));
    let mut best: Option<(u64, u64, usize)> = None;
    for c in choices {
        if any_up && !up(c.output) {
            continue;
        }
        let k = (key(flow, c), c.name_id, c.output);
        if best.is_none_or(|b| k < b) {
            best = Some(k);
        }
    }
    best.map_or(choices[0].output, |b| b.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(names: &[(&str, u32)]) -> Vec<Choice> {
        names
            .iter()
            .enumerate()
            .map(|(i, (n, w))| Choice {
                output: i,
                weight: *w,
                name_id: name_id(n),
            })
            .collect()
    }

    #[test]
    fn the_table_is_log2() {
        for (j, &e) in LOG2_TABLE.iter().enumerate() {
            let want = (1.0 + j as f64 / 1024.0).log2() * 4_294_967_296.0;
            assert!((e as f64 - want).abs() <= 2.0, "{j}: {e} vs {want}");
        }
        for m in [1u64, 2, 3, 1000, 1 << 40, (1 << 53) - 1, u64::MAX] {
            let want = (m as f64).log2() * 4_294_967_296.0;
            let got = log2_q32(m) as f64;
            assert!(
                (got - want).abs() / want.max(1.0) < 1e-6,
                "{m}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn spreads_by_weight_and_moves_only_what_it_must() {
        let c = three(&[("ids1", 1), ("ids2", 1), ("ids3", 2)]);
        let flows: Vec<u64> = (0..40_000u64).map(|f| mix(f.wrapping_mul(7919))).collect();
        let mut counts = [0u32; 3];
        for &h in &flows {
            counts[choose(h, &c, |_| true)] += 1;
        }
        // Weights 1:1:2 -> 25% / 25% / 50%, within 5% of each share.
        for (i, want) in [10_000.0, 10_000.0, 20_000.0].iter().enumerate() {
            assert!((counts[i] as f64 / want - 1.0).abs() < 0.05, "{counts:?}");
        }
        // Output 1 down: only its flows move.
        for &h in &flows {
            let before = choose(h, &c, |_| true);
            let after = choose(h, &c, |o| o != 1);
            if before != 1 {
                assert_eq!(before, after);
            } else {
                assert_ne!(after, 1);
            }
        }
        // Removed from the configuration (the others renumbered): the same, by name.
        let two = vec![Choice { output: 0, ..c[0] }, Choice { output: 1, ..c[2] }];
        let moved = flows
            .iter()
            .filter(|&&h| {
                let before = choose(h, &c, |_| true);
                before != 1 && choose(h, &two, |_| true) != if before == 0 { 0 } else { 1 }
            })
            .count();
        assert_eq!(moved, 0, "flows of the remaining outputs moved");
        // All down: still one of them.
        assert!(choose(flows[0], &c, |_| false) < 3);
    }
}
