//! vxspan's pure core: the plan compiler, the classifier, the transforms and the counters.
//!
//! No I/O, no clock, no threads, no `unsafe`: everything a feature does to a packet can be
//! tested offline by feeding frames to an [`Engine`] and looking at what reached its [`Sink`].
#![deny(unsafe_code)]

pub mod bpf;
pub mod broker;
pub mod counters;
pub mod decap;
pub mod encap;
pub mod engine;
pub mod hashkey;
pub mod plan;
pub mod reasm;
pub mod rendezvous;
pub mod topk;

pub use counters::{Counters, Report, RxDrop, TxDrop};
pub use engine::{Engine, RxFrame, Sink, Timestamp, TxFrame};
pub use plan::{FilterCompiler, Plan, PlanError, Tier};
pub use vxspan_config as config;
pub use vxspan_wire as wire;
