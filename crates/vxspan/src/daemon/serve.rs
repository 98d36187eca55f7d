//! Control jobs the first worker does between two batches: `status`, `reload`, `restart`
//! (checked here, done when the loop ends) and attaching a capture. The control server ([`crate::control::server`]) reads the requests and writes the
//! replies; nothing here touches a client's socket.

use super::*;
use crate::control::server::Job;

impl State {
    pub(super) fn handle(&mut self, job: Job) {
        match job {
            Job::Status(reply) => {
                let _ = reply.try_send(self.status().to_string());
            }
            // Read, compiled and opened on the preparer's thread; answered once applied.
            Job::Reload(reply) => self.want(super::prepare::Want::Reload(vec![Some(reply)])),
            Job::Restart { stream, reply } => {
                let r = if self.restart.is_some() {
                    Err("a restart is already under way".to_owned())
                } else {
                    super::restart::preflight(&self.config)
                        .map(|exe| self.restart = Some((exe, stream)))
                };
                if let Err(e) = &r {
                    warn(format!("restart refused, the daemon keeps running: {e}"));
                }
                let _ = reply.try_send(r);
            }
            Job::Capture {
                rule,
                stream,
                reply,
            } => match self.attach_capture(rule.as_deref(), stream) {
                // Answered once the kernel tier runs the captured rule's groups in userspace
                // (at once when there is nothing to move): the capture records what follows.
                Ok(()) => self.want(super::prepare::Want::Captured(vec![reply])),
                Err(e) => {
                    let _ = reply.try_send(Err(e));
                }
            },
        }
    }

    /// Streams, as pcapng, what `rule` (every rule with `None`) forwards to `stream`, until the
    /// client leaves or a reload closes captures.
    fn attach_capture(
        &mut self,
        rule: Option<&str>,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<(), String> {
        let plan = self.engine.plan();
        let index = match rule {
            None => None,
            Some(name) => Some(
                plan.rules
                    .iter()
                    .position(|r| r.name == name)
                    .ok_or_else(|| format!("no rule named {name:?}"))?,
            ),
        };
        let what = rule.map_or_else(|| "every forwarded frame".to_owned(), str::to_owned);
        let c = LiveCapture::start(
            stream,
            index,
            &plan.input_descriptions(),
            what.clone(),
            self.ports.outputs.captures.dropped.clone(),
        )
        .map_err(|e| format!("starting the capture: {e}"))?;
        log(format!("capture attached ({what})"));
        self.ports.outputs.captures.attach(c);
        Ok(())
    }
}
