//! A flow that misbehaves on request, to prove the host contains it. After `started` it asks
//! for a digit; then:
//! 1 loops forever, 2 grows memory without bound, 3 panics (a trap), 4 returns a flow error,
//! 5 returns an action the host must refuse (an empty queue name), 6 counts visits in the
//! flow's durable kv store, # sleeps for an hour (blocked in a host call, out of the epoch's
//! reach), 0 writes kv and then panics (the write must not stick); anything else is echoed
//! back with another gather. `hangup` ends cleanly.
//!
//! With the setting `trap_percent=N` it traps on `started` for callers whose number ends in a
//! digit below N/10: N% of callers, the same ones every time.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(Chaos);

/// Counts the steps it survived.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Chaos {
    steps: u32,
}

impl Flow for Chaos {
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
        self.steps += 1;
        let ask = Action::gather(Gather::digits(1).say("Chaos flow: pick a fault."));
        match event {
            Event::Started => {
                let percent: u32 = cx
                    .config("trap_percent")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let last_digit = cx
                    .contact()
                    .from
                    .chars()
                    .last()
                    .and_then(|c| c.to_digit(10))
                    .unwrap_or(9);
                if last_digit * 10 < percent {
                    panic!("chaos flow traps for {percent}% of callers");
                }
                Ok(vec![Action::say("Chaos flow ready."), ask])
            }
            Event::Input(input) => match input.digits.as_str() {
                "1" => loop {
                    std::hint::black_box(&mut self.steps);
                },
                "2" => {
                    // Reserve (without touching) 8 MiB at a time: each reservation grows the
                    // linear memory, so the cap is reached in a few steps whatever the
                    // machine's speed, long before the deadline.
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(Vec::with_capacity(8 << 20));
                        std::hint::black_box(&hoard);
                    }
                }
                "3" => panic!("chaos flow asked to trap"),
                "4" => Err(FlowError::Internal("chaos flow asked to fail".into())),
                "5" => Ok(vec![Action::enqueue("")]),
                "6" => {
                    let visits = bump(cx);
                    cx.log(Level::Info, &format!("visit {visits}"));
                    Ok(vec![Action::say(&format!("Visit {visits}.")), ask])
                }
                "#" => {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    Ok(vec![Action::say("Slept an hour."), ask])
                }
                "0" => {
                    bump(cx);
                    panic!("chaos flow trapped after writing kv")
                }
                other => Ok(vec![
                    Action::say(&format!("You pressed {other}. Step {}.", self.steps)),
                    ask,
                ]),
            },
            Event::Hangup => Ok(vec![Action::End]),
            _ => Ok(vec![ask]),
        }
    }
}

/// Adds one to the `visits` counter in kv and returns the new value.
fn bump(cx: &mut Context<'_>) -> u64 {
    let visits = cx
        .kv_get("visits")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    cx.kv_set("visits", visits.to_string().as_bytes());
    visits
}
