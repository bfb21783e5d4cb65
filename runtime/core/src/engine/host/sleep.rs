//! `wasi:clocks/monotonic-clock` with sleeps bounded by the guest's time budget. A guest that
//! sleeps (Rust's `std::thread::sleep` waits on a monotonic-clock pollable) blocks inside a
//! host call, where epoch interruption cannot reach it; capping every wait at what is left of
//! the budget means the deadline still cuts it, an hour-long sleep included.

use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Host};

use super::StepState;

/// How far past the deadline a cut wait ends: a few epoch ticks.
const OVERSHOOT: Duration = Duration::from_millis(5);

/// The monotonic clock of one store, with what is left of its guest's budget.
struct Bounded<'a> {
    clocks: WasiClocksCtxView<'a>,
    left: Duration,
}

struct BoundedClock;

impl HasData for BoundedClock {
    type Data<'a> = Bounded<'a>;
}

impl Host for Bounded<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.clocks.now()
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        self.clocks.resolution()
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.clocks.now()?;
        self.subscribe_duration(when.saturating_sub(now))
    }

    fn subscribe_duration(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        // A wait past the deadline ends a little after it, so the epoch has certainly moved
        // on when the guest resumes and its next check interrupts it.
        let left = u64::try_from((self.left + OVERSHOOT).as_nanos()).unwrap_or(u64::MAX);
        self.clocks.subscribe_duration(nanos.min(left))
    }
}

/// Replaces the monotonic clock WASI put in `linker` with the bounded one.
pub fn add_bounded_clock(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<StepState, BoundedClock>(linker, |state| {
        let left = state.time_left();
        Bounded {
            clocks: state.clocks(),
            left,
        }
    });
    linker.allow_shadowing(false);
    added
}
