//! `rate_limit` in the kernel tier: the `buckets` map `bpf/ratelimit.h` reads, one token bucket
//! per rate-limited interface output, full at load (as the engine's buckets start). A reload
//! loads a fresh object, so its buckets start full again.

use aya::maps::{Array, MapData};
use aya::Ebpf;

use crate::maps::VxBucket;
use crate::tables::Tables;

/// Writes the token buckets of `t`'s rate-limited outputs into a freshly loaded object.
pub(crate) fn fill(ebpf: &mut Ebpf, t: &Tables) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("XDP: buckets: {e}");
    let map = ebpf
        .map_mut("buckets")
        .ok_or_else(|| err(&"map missing from the object"))?;
    let mut buckets: Array<&mut MapData, VxBucket> = Array::try_from(map).map_err(|e| err(&e))?;
    for (o, out) in t.outputs.iter().enumerate() {
        let Some((rate, burst)) = out.rate else {
            continue;
        };
        let cap = burst
            .checked_mul(1_000_000_000)
            .ok_or_else(|| err(&"a burst beyond the kernel tier's bucket"))?;
        let rate = rate.max(1);
        let v = VxBucket {
            tokens: cap,
            cap,
            rate,
            fill: cap / rate + 1,
            ..Default::default()
        };
        buckets.set(o as u32, v, 0).map_err(|e| err(&e))?;
    }
    Ok(())
}
