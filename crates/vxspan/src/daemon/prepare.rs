//! The heavy part of a reload and of a capture's move of kernel-tier groups, on a thread of
//! its own (`vxspan-prepare`): reading and compiling the configuration file, opening the new
//! ports, building the kernel tier's tables and loading them (the verifier, the VLAN-hint
//! copies). The first worker only takes a snapshot of what that needs (cheap), goes on with its
//! rings, and applies the result between two batches: the swap itself (the engine, the rings
//! handed over, one bpf_link_update per input). The replaced XDP object is not waited for
//! either: it is counted until its program can no longer run ([`crate::kernel::KernelTier::retire`]).
//!
//! One preparation runs at a time, in the order asked; what the first worker asked next waits
//! in [`Preparer::queue`] and is snapshotted when its turn comes, so it sees the state the one
//! before left. A preparation that the state outran (the inputs changed meanwhile: a port came
//! back, the kernel tier was re-attached) is refused at apply time and asked again.

use super::*;
use crate::kernel::KernelAsk;
use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use vxspan_xdp::loader::Prepared;

/// What preparing a reload needs of the running state ([`State::reload_ctx`]).
pub(super) struct ReloadCtx {
    pub(super) path: PathBuf,
    pub(super) cfg: vxspan_config::Config,
    pub(super) ports_key: (Vec<String>, Vec<String>),
    pub(super) view: PortsView,
    /// The running plan's input interfaces.
    pub(super) inputs: Vec<String>,
    pub(super) workers: usize,
    pub(super) tx: TxSetup,
    pub(super) kernel: Option<KernelAsk>,
}

/// A reload ready to apply ([`State::apply_reload`]).
pub(super) struct PreparedReload {
    pub(super) loaded: Loaded,
    pub(super) diff: super::diff::Diff,
    pub(super) same_ports: bool,
    pub(super) same_inputs: bool,
    /// The new plan's ports, when they are not the running ones.
    pub(super) new_ports: Option<Ports>,
    /// The kernel tier's object for the new plan, when the inputs stay.
    pub(super) kernel: Option<Prepared>,
}

/// Reads, validates and compiles the file, and opens or loads everything the new plan needs
/// that the running one does not have; nothing running is touched.
pub(super) fn prepare_reload(ctx: ReloadCtx) -> Result<PreparedReload, Refused> {
    let loaded = load_plan(&ctx.path).map_err(Refused::Invalid)?;
    let diff = super::diff::diff(&ctx.cfg, &loaded.cfg);
    if !diff.not_live.is_empty() {
        return Err(Refused::NotLive(diff.not_live));
    }
    let not_live = |e: String| Refused::NotLive(vec![e]);
    let plan = &loaded.plan;
    let same_ports = interfaces_key(plan) == ctx.ports_key;
    let same_inputs = plan
        .inputs
        .iter()
        .map(|i| &i.interface)
        .eq(ctx.inputs.iter());
    let new_ports = if same_ports {
        None
    } else {
        Some(
            open_ports(plan, ctx.workers, Some(&ctx.view), &ctx.tx)
                .map_err(|e| not_live(format!("opening the new ports: {e:#}")))?,
        )
    };
    let kernel = match (&ctx.kernel, same_inputs) {
        (Some(k), true) => Some(
            k.prepare(plan)
                .map_err(|e| not_live(format!("the kernel tier: {e}")))?,
        ),
        _ => None,
    };
    Ok(PreparedReload {
        loaded,
        diff,
        same_ports,
        same_inputs,
        new_ports,
        kernel,
    })
}

/// Who asked for a reload: a control client (its reply), or SIGHUP (the log only).
pub(super) type ReloadReply = Option<SyncSender<String>>;

/// Something the first worker wants prepared, before it is snapshotted.
pub(super) enum Want {
    /// Everyone who asked for it while it waited (one reload serves them all).
    Reload(Vec<ReloadReply>),
    /// The kernel tier's placement for the rules captures record now; the clients whose
    /// capture waits for it (each is told once the tables are swapped).
    Captured(Vec<SyncSender<Result<(), String>>>),
}

/// A kernel-tier placement to prepare for captures: the running plan it was derived from, the
/// captured rules, and that plan with their groups in userspace.
struct CapturedAsk {
    base: Arc<Plan>,
    want: Option<Vec<usize>>,
    plan: Plan,
}

enum Ask {
    Reload(Box<ReloadCtx>),
    Kernel(KernelAsk, Box<CapturedAsk>),
}

enum Ready {
    Reload(Box<Result<PreparedReload, Refused>>),
    Kernel(Box<CapturedAsk>, Box<Result<Prepared, String>>),
}

/// What became of a prepared capture move.
enum Moved {
    Done,
    /// The state changed since it was asked (a reload, other captures, other inputs): it is
    /// asked again from the state now.
    Stale,
}

/// The preparer thread and what waits for it.
pub(super) struct Preparer {
    asks: Sender<Ask>,
    ready: Receiver<Ready>,
    /// What is being prepared now (taken when it is ready), and what waits its turn.
    running: Option<Want>,
    pub(super) queue: VecDeque<Want>,
}

impl Preparer {
    /// Starts the thread; `wake` is rung whenever a preparation is ready.
    pub(super) fn spawn(wake: Arc<crate::wake::Waker>) -> std::io::Result<Preparer> {
        let (asks, rx) = channel::<Ask>();
        let (tx, ready) = channel();
        std::thread::Builder::new()
            .name("vxspan-prepare".into())
            .spawn(move || {
                crate::process::yield_to_workers();
                for ask in rx {
                    // A bug here fails this preparation, not every later one.
                    let bug = |what: &str| format!("{what}: internal error (a bug; see the log)");
                    let r = match ask {
                        Ask::Reload(ctx) => Ready::Reload(Box::new(
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                prepare_reload(*ctx)
                            }))
                            .unwrap_or_else(|_| {
                                Err(Refused::NotLive(vec![bug("preparing the reload")]))
                            }),
                        )),
                        Ask::Kernel(ask, c) => {
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                ask.prepare(&c.plan)
                            }))
                            .unwrap_or_else(|_| Err(bug("loading the kernel tier")));
                            Ready::Kernel(c, Box::new(r))
                        }
                    };
                    if tx.send(r).is_err() {
                        break;
                    }
                    wake.wake();
                }
            })?;
        Ok(Preparer {
            asks,
            ready,
            running: None,
            queue: VecDeque::new(),
        })
    }

    /// Whether nothing is being prepared or waits.
    pub(super) fn idle(&self) -> bool {
        self.running.is_none() && self.queue.is_empty()
    }
}

impl State {
    /// Queues `want`; it is prepared once what was asked before is applied. A reload asked for
    /// while another waits its turn joins it (the file is read when its turn comes).
    pub(super) fn want(&mut self, want: Want) {
        match (want, self.preparer.queue.back_mut()) {
            (Want::Reload(mut more), Some(Want::Reload(waiting))) => waiting.append(&mut more),
            (want, _) => self.preparer.queue.push_back(want),
        }
        self.next_preparation();
    }

    /// Starts the next preparation if none runs. A capture move that turns out to change no
    /// tier is done at once.
    fn next_preparation(&mut self) {
        while self.preparer.running.is_none() {
            let Some(want) = self.preparer.queue.pop_front() else {
                return;
            };
            let ask = match &want {
                Want::Reload(_) => Some(Ask::Reload(Box::new(self.reload_ctx()))),
                Want::Captured(_) => self
                    .captured_ask()
                    .map(|(ask, c)| Ask::Kernel(ask, Box::new(c))),
            };
            let Some(ask) = ask else {
                if let Want::Captured(replies) = want {
                    for r in replies {
                        let _ = r.try_send(Ok(()));
                    }
                }
                continue;
            };
            if self.preparer.asks.send(ask).is_err() {
                self.fail(want, "the preparer thread is gone".into());
                continue;
            }
            self.preparer.running = Some(want);
        }
    }

    fn fail(&mut self, want: Want, e: String) {
        match want {
            Want::Reload(replies) => self.reloaded(Err(Refused::NotLive(vec![e])), replies),
            Want::Captured(replies) => {
                warn(format!("captures: {e}"));
                for r in replies {
                    let _ = r.try_send(Ok(()));
                }
            }
        }
    }

    /// Applies what the preparer finished (between two batches) and starts the next one.
    pub(super) fn apply_prepared(&mut self) {
        loop {
            match self.preparer.ready.try_recv() {
                Ok(ready) => self.apply_one(ready),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    // The thread is gone (its work is guarded against panics, so a bug in the
                    // channel): nothing asked will be answered by it; say so rather than wait.
                    let waiting: Vec<Want> = self
                        .preparer
                        .running
                        .take()
                        .into_iter()
                        .chain(self.preparer.queue.drain(..))
                        .collect();
                    for w in waiting {
                        self.fail(w, "the preparer thread is gone".into());
                    }
                    return;
                }
            }
        }
        self.next_preparation();
    }

    fn apply_one(&mut self, ready: Ready) {
        let Some(want) = self.preparer.running.take() else {
            return;
        };
        match (ready, want) {
            (Ready::Reload(r), Want::Reload(replies)) => {
                let r = (*r).and_then(|p| self.apply_reload(p));
                self.reloaded(r, replies);
            }
            (Ready::Kernel(c, result), Want::Captured(replies)) => {
                match (*result).and_then(|p| self.commit_captured(*c, p)) {
                    Ok(Moved::Done) => {}
                    Ok(Moved::Stale) => {
                        self.preparer.queue.push_front(Want::Captured(replies));
                        return;
                    }
                    Err(e) => warn(format!(
                        "captures: the kernel tier could not move the captured groups ({e}): a capture sees only what the userspace tier forwards"
                    )),
                }
                for r in replies {
                    let _ = r.try_send(Ok(()));
                }
            }
            (_, want) => self.fail(want, "a preparation came back out of order".into()),
        }
    }

    /// Logs a reload's outcome and answers whoever asked.
    fn reloaded(&mut self, r: Result<Reloaded, Refused>, replies: Vec<ReloadReply>) {
        let line = match r {
            Ok(r) => {
                log(r.line());
                serde_json::json!({ "ok": r.summary, "changes": r.changes }).to_string()
            }
            Err(e) => {
                warn(format!(
                    "reload refused, the running configuration stays: {e}"
                ));
                match &e {
                    Refused::Invalid(_) => {
                        serde_json::json!({ "error": e.to_string(), "invalid": true })
                    }
                    Refused::NotLive(why) => {
                        serde_json::json!({ "error": e.to_string(), "not_live": why })
                    }
                }
                .to_string()
            }
        };
        for reply in replies.into_iter().flatten() {
            let _ = reply.try_send(line.clone());
        }
    }

    /// What the captures want of the kernel tier's placement, if it is not what runs: the
    /// preparation to ask for. When no tier changes, the wanted set is taken at once.
    fn captured_ask(&mut self) -> Option<(KernelAsk, CapturedAsk)> {
        let want = self.ports.outputs.captures.rules();
        if want == self.captured {
            return None;
        }
        let Some(k) = &self.kernel else {
            self.captured = want;
            return None;
        };
        let plan = with_captured(self.engine.plan(), want.as_deref());
        // Nothing to swap when no group changes tier (a capture of a userspace rule).
        let tiers = |p: &Plan| -> Vec<vxspan_core::Tier> {
            p.inputs
                .iter()
                .flat_map(|i| i.groups.iter().map(|g| g.tier))
                .collect()
        };
        let now = with_captured(self.engine.plan(), self.captured.as_deref());
        if tiers(&plan) == tiers(&now) {
            self.captured = want;
            return None;
        }
        Some((
            k.ask(),
            CapturedAsk {
                base: self.engine.plan().clone(),
                want,
                plan,
            },
        ))
    }

    /// Swaps in the kernel tier's tables for a captured placement (prepared), unless the state
    /// moved on since it was asked.
    fn commit_captured(&mut self, c: CapturedAsk, p: Prepared) -> Result<Moved, String> {
        let CapturedAsk { base, want, plan } = c;
        let now = self.ports.outputs.captures.rules();
        let Some(k) = &mut self.kernel else {
            return Ok(Moved::Done);
        };
        if !Arc::ptr_eq(&base, self.engine.plan()) || now != want || !k.ask().made(&p) {
            return Ok(Moved::Stale);
        }
        k.commit(self.engine.plan().clone(), &plan, p)?;
        let moved = plan
            .inputs
            .iter()
            .flat_map(|i| &i.groups)
            .zip(self.engine.plan().inputs.iter().flat_map(|i| &i.groups))
            .filter(|(n, o)| n.tier != o.tier)
            .count();
        log(format!(
            "captures: {moved} group(s) of the kernel tier in userspace while captured"
        ));
        self.captured = want;
        if let Err(e) = self.open_xsks(&plan) {
            warn(format!(
                "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
            ));
        }
        self.log_placement();
        Ok(Moved::Done)
    }

    /// Moves the kernel-tier groups of the captured rules to userspace (and back once their
    /// captures end), through the preparer: the capture sees every frame of its rule, whatever
    /// tier ran it. Called once a second; a move already asked is not asked twice.
    pub(super) fn place_captured(&mut self) {
        let asked = self
            .preparer
            .queue
            .iter()
            .chain(self.preparer.running.as_ref())
            .any(|w| matches!(w, Want::Captured(_)));
        if !asked && self.ports.outputs.captures.rules() != self.captured {
            self.want(Want::Captured(Vec::new()));
        }
    }
}
