//! `log`: a flow's log lines go to the host's structured log, tagged with the contact, the
//! flow and its version. Bounded per step so a chatty flow cannot flood the log.

use super::StepState;
use crate::engine::bindings::switchboard::flow::log::{Host, Level};

const MAX_LINES_PER_STEP: u32 = 100;
const MAX_LINE: usize = 4096;

impl Host for StepState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LINES_PER_STEP {
            if self.log_lines == MAX_LINES_PER_STEP + 1 {
                tracing::warn!(target: "flow", contact = %self.contact, flow = %self.flow, version = self.version,
                    "this step wrote more than {MAX_LINES_PER_STEP} log lines; the rest are dropped");
            }
            return;
        }
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (contact, flow, version) = (&*self.contact, &*self.flow, self.version);
        match level {
            Level::Trace => tracing::trace!(target: "flow", contact, flow, version, "{message}"),
            Level::Debug => tracing::debug!(target: "flow", contact, flow, version, "{message}"),
            Level::Info => tracing::info!(target: "flow", contact, flow, version, "{message}"),
            Level::Warn => tracing::warn!(target: "flow", contact, flow, version, "{message}"),
            Level::Error => tracing::error!(target: "flow", contact, flow, version, "{message}"),
        }
    }
}
