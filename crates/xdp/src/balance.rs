//! Balancing in the kernel tier: the maps `bpf/balance.h` reads. `balsets` holds each balance
//! set's outputs, weights and name ids ([`Tables::balsets`]); `log2tab` the rendezvous's
//! fixed-point log2 table ([`vxspan_core::rendezvous::LOG2_TABLE`]), so that the program and the
//! engine compute the same keys from one table.

use aya::maps::{Array, MapData};
use aya::Ebpf;

use crate::maps::{VxBalset, VxChoice};
use crate::tables::{Tables, BALSETS};
use vxspan_core::rendezvous::LOG2_TABLE;

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("XDP: {what}: {e}")
}

/// Marks output `o` up or down in `out_up`: balancing skips it while another is up.
pub(crate) fn set_up(ebpf: &mut Ebpf, o: u32, up: bool) -> Result<(), String> {
    let map = ebpf
        .map_mut("out_up")
        .ok_or_else(|| err("out_up", "map missing from the object"))?;
    let mut m: Array<&mut MapData, u32> = Array::try_from(map).map_err(|e| err("out_up", e))?;
    m.set(o, u32::from(up), 0).map_err(|e| err("out_up", e))
}

/// Writes the balance sets of `t`, every output up, and the log2 table into a freshly loaded
/// object.
pub(crate) fn fill(ebpf: &mut Ebpf, t: &Tables) -> Result<(), String> {
    if t.balsets.len() > BALSETS {
        return Err(err("balsets", format!("more than {BALSETS} balance sets")));
    }
    {
        let map = ebpf
            .map_mut("balsets")
            .ok_or_else(|| err("balsets", "map missing from the object"))?;
        let mut sets: Array<&mut MapData, VxBalset> =
            Array::try_from(map).map_err(|e| err("balsets", e))?;
        for (s, choices) in t.balsets.iter().enumerate() {
            let mut v = VxBalset {
                n: choices.len() as u32,
                ..Default::default()
            };
            if choices.len() > v.c.len() {
                return Err(err("balsets", "a set larger than the map's entry"));
            }
            for (slot, c) in v.c.iter_mut().zip(choices) {
                *slot = VxChoice {
                    output: c.output as u32,
                    weight: c.weight,
                    name_id: c.name_id,
                };
            }
            sets.set(s as u32, v, 0).map_err(|e| err("balsets", e))?;
        }
    }
    {
        let map = ebpf
            .map_mut("out_up")
            .ok_or_else(|| err("out_up", "map missing from the object"))?;
        let mut up: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(|e| err("out_up", e))?;
        for o in 0..t.outputs.len() {
            up.set(o as u32, 1, 0).map_err(|e| err("out_up", e))?;
        }
    }
    let map = ebpf
        .map_mut("log2tab")
        .ok_or_else(|| err("log2tab", "map missing from the object"))?;
    let mut tab: Array<&mut MapData, [u64; 1025]> =
        Array::try_from(map).map_err(|e| err("log2tab", e))?;
    tab.set(0, *LOG2_TABLE, 0).map_err(|e| err("log2tab", e))?;
    Ok(())
}
