//! The main IVR menu of a typical contact center.
//!
//! - Greets the caller by name when the CRM knows their number.
//! - Checks business hours in the flow's configured time zone (settings `timezone`, `open`,
//!   `close`, `days`; defaults: America/New_York, 09:00-17:00, Monday to Friday).
//! - Offers a menu: 1 sales, 2 support, 0 an agent, * repeats the menu. A key pressed during
//!   the greeting answers it at once; setting `flush_type_ahead` = `true` drops such keys.
//! - Re-prompts on an invalid key; after three invalid keys, hands the caller to an agent.
//! - Sends VIP customers (CRM tier `vip`) to the `vip` queue at high priority.
//! - Ends politely when the caller says nothing.
//! - While the caller waits in a queue, tells them their place in line and offers a callback
//!   (press 1): they keep their place and an agent calls them back.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(IvrMenu);

#[cfg(not(feature = "menu-v2"))]
const MENU: &str = "For sales, press 1. For support, press 2. To speak with an agent, press 0. To hear these options again, press star.";
#[cfg(not(feature = "menu-v2"))]
const SECOND_LINE: &str = "support";
#[cfg(feature = "menu-v2")]
const MENU: &str = "For sales, press 1. For billing and support, press 2. To speak with an agent, press 0. To hear these options again, press star.";
#[cfg(feature = "menu-v2")]
const SECOND_LINE: &str = "billing";

/// How many invalid keys the caller may press before we stop asking.
const MAX_INVALID: u32 = 3;

/// What the flow remembers between events.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IvrMenu {
    /// The caller's first name, when the CRM knows them.
    pub name: Option<String>,
    /// Whether the CRM marks the caller as VIP.
    pub vip: bool,
    /// Invalid keys pressed so far.
    pub invalid: u32,
    /// The queue the caller was sent to.
    pub queue: Option<String>,
    /// Whether the caller was put back in line once already (an agent could not be reached).
    #[serde(default)]
    pub requeued: bool,
}

impl Flow for IvrMenu {
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
        Ok(match event {
            Event::Started => {
                // A recorded welcome the admin uploaded (`PUT /v1/prompts/ID`), when set.
                let mut actions: Vec<Action> = cx
                    .config("welcome_prompt")
                    .map(|prompt| Action::play(&prompt))
                    .into_iter()
                    .collect();
                actions.extend(self.greet(cx));
                actions
            }
            Event::Input(input) if self.queue.is_some() => match input.digits.trim() {
                "1" => {
                    let number = cx.contact().from.clone();
                    vec![
                        Action::say(
                            "You keep your place in line, and we will call you back. Goodbye.",
                        ),
                        Action::callback(&number),
                    ]
                }
                // Anything else: keep waiting quietly.
                _ => vec![],
            },
            Event::Input(input) => self.choose(cx, input.digits.trim()),
            Event::QueueWait(wait) => vec![Action::gather(
                Gather::digits(1)
                    .say(&format!(
                        "You are number {} in line. To be called back instead of waiting, press 1.",
                        wait.position
                    ))
                    .timeout_ms(5_000),
            )],
            // A waiting caller who did not answer the callback offer keeps waiting.
            Event::NoInput if self.queue.is_some() => vec![],
            Event::NoInput => vec![
                Action::say("We did not receive any input. Thank you for calling. Goodbye."),
                Action::Hangup,
            ],
            Event::TaskOutcome(outcome) => match outcome.status {
                TaskStatus::TimedOut => vec![
                    Action::say(
                        "All of our agents are still busy. Please call again later. Goodbye.",
                    ),
                    Action::Hangup,
                ],
                // The agent could not be reached (or a supervisor canceled): once, the caller
                // goes back in line for the next agent.
                TaskStatus::Canceled if !self.requeued => match self.queue.clone() {
                    Some(queue) => {
                        self.requeued = true;
                        let department = cx.attribute("department").unwrap_or("agents").to_string();
                        vec![
                            Action::say(
                                "We could not connect you to that agent. Please hold for the next one.",
                            ),
                            Action::enqueue_with(
                                &queue,
                                if self.vip { 10 } else { 0 },
                                &[("department", &department), ("requeued", "true")],
                            ),
                        ]
                    }
                    None => vec![],
                },
                _ => vec![],
            },
            Event::Hangup => {
                cx.log(Level::Info, "caller hung up");
                vec![Action::End]
            }
            Event::Message(_) | Event::Mail(_) => {
                return Err(FlowError::UnexpectedEvent(
                    "the IVR menu serves voice calls, not messages".into(),
                ));
            }
        })
    }
}

impl IvrMenu {
    fn greet(&mut self, cx: &mut Context<'_>) -> Vec<Action> {
        if let Some(customer) = cx.customer_by_phone() {
            self.name = customer.name.split_whitespace().next().map(str::to_string);
            self.vip = customer.tier.eq_ignore_ascii_case("vip");
        }
        let greeting = match &self.name {
            Some(name) => format!("Hello {name}, thank you for calling Acme."),
            None => "Thank you for calling Acme.".to_string(),
        };
        let hours = BusinessHours::from_config(cx);
        match hours.is_open(cx) {
            Ok(true) => vec![Action::say(&greeting), self.menu(cx)],
            Ok(false) => vec![
                Action::say(&greeting),
                Action::say(&format!(
                    "We are closed right now. Our hours are {} to {}, {}. Please call again then. Goodbye.",
                    hours.open_text(),
                    hours.close_text(),
                    hours.days_text()
                )),
                Action::Hangup,
            ],
            Err(why) => {
                // A bad setting must not turn callers away: log it and treat us as open.
                cx.log(Level::Error, &format!("business hours unavailable: {why}"));
                vec![Action::say(&greeting), self.menu(cx)]
            }
        }
    }

    fn menu(&self, cx: &mut Context<'_>) -> Action {
        let menu = Gather::digits(1).say(MENU).timeout_ms(5_000).retries(1);
        // A key pressed during the greeting answers the menu at once, unless the admin
        // wants every caller to hear the options first.
        if cx.config("flush_type_ahead").as_deref() == Some("true") {
            Action::gather(menu.flush())
        } else {
            Action::gather(menu)
        }
    }

    fn choose(&mut self, cx: &mut Context<'_>, digits: &str) -> Vec<Action> {
        let department = match digits {
            "1" => "sales",
            "2" => SECOND_LINE,
            "0" => "agents",
            "*" => return vec![self.menu(cx)],
            // The operator line, when the admin configured one (a SIP URI or a number).
            "8" if cx.config("operator").is_some() => {
                let operator = cx.config("operator").unwrap_or_default();
                return vec![
                    Action::say("Transferring you to the operator."),
                    Action::transfer(&operator),
                ];
            }
            _ => {
                self.invalid += 1;
                if self.invalid >= MAX_INVALID {
                    cx.log(
                        Level::Warn,
                        "three invalid choices; handing the caller to an agent",
                    );
                    return self.route(
                        "agents",
                        "Sorry, we still could not understand your choice. Let me connect you with an agent.",
                        &[("reason", "invalid-input")],
                    );
                }
                return vec![
                    Action::say("Sorry, that is not a valid choice."),
                    self.menu(cx),
                ];
            }
        };
        let sentence = match department {
            "sales" => "Connecting you to sales.",
            "support" => "Connecting you to support.",
            "billing" => "Connecting you to billing and support.",
            _ => "Connecting you to an agent.",
        };
        self.route(department, sentence, &[])
    }

    fn route(&mut self, department: &str, sentence: &str, extra: &[(&str, &str)]) -> Vec<Action> {
        let mut attributes = vec![("department", department)];
        attributes.extend_from_slice(extra);
        let (queue, priority) = if self.vip {
            attributes.push(("tier", "vip"));
            ("vip", 10)
        } else {
            (department, 0)
        };
        self.queue = Some(queue.to_string());
        vec![
            Action::say(sentence),
            Action::set_attribute("department", department),
            Action::enqueue_with(queue, priority, &attributes),
        ]
    }
}

/// Opening hours read from the flow's settings.
struct BusinessHours {
    zone: String,
    open: (u8, u8),
    close: (u8, u8),
    days: (u8, u8),
}

impl BusinessHours {
    fn from_config(cx: &mut Context<'_>) -> Self {
        BusinessHours {
            zone: cx.config_or("timezone", "America/New_York"),
            open: parse_hhmm(&cx.config_or("open", "09:00")).unwrap_or((9, 0)),
            close: parse_hhmm(&cx.config_or("close", "17:00")).unwrap_or((17, 0)),
            days: parse_days(&cx.config_or("days", "mon-fri")).unwrap_or((0, 4)),
        }
    }

    fn is_open(&self, cx: &mut Context<'_>) -> Result<bool, String> {
        let now = cx.local_time(&self.zone)?;
        let day = weekday_index(now.weekday);
        let minutes = u32::from(now.hour) * 60 + u32::from(now.minute);
        let open = u32::from(self.open.0) * 60 + u32::from(self.open.1);
        let close = u32::from(self.close.0) * 60 + u32::from(self.close.1);
        Ok(day >= self.days.0 && day <= self.days.1 && minutes >= open && minutes < close)
    }

    fn open_text(&self) -> String {
        format!("{}:{:02}", self.open.0, self.open.1)
    }

    fn close_text(&self) -> String {
        format!("{}:{:02}", self.close.0, self.close.1)
    }

    fn days_text(&self) -> String {
        format!(
            "{} to {}",
            DAY_NAMES[self.days.0 as usize], DAY_NAMES[self.days.1 as usize]
        )
    }
}

const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn weekday_index(day: Weekday) -> u8 {
    match day {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    }
}

fn parse_hhmm(text: &str) -> Option<(u8, u8)> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 closes at midnight, so 00:00-24:00 means open all day.
    (h < 24 && m < 60 || (h, m) == (24, 0)).then_some((h, m))
}

fn parse_days(text: &str) -> Option<(u8, u8)> {
    let day = |name: &str| {
        DAY_NAMES
            .iter()
            .position(|d| d[..3].eq_ignore_ascii_case(name.trim()))
            .map(|i| i as u8)
    };
    let (first, last) = text.split_once('-')?;
    Some((day(first)?, day(last)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sdk::testing::{Conversation, spoken};

    fn call() -> Conversation<IvrMenu> {
        Conversation::voice("+15551230001", "+15550100")
    }

    fn queue_of(actions: &[Action]) -> Option<(String, i32)> {
        actions.iter().find_map(|a| match a {
            Action::Enqueue(e) => Some((e.queue.clone(), e.priority)),
            _ => None,
        })
    }

    #[test]
    fn pressing_1_reaches_sales() {
        let mut call = call();
        let greeting = call.start();
        assert_eq!(spoken(&greeting)[0], "Thank you for calling Acme.");
        assert_eq!(queue_of(&call.press("1")), Some(("sales".into(), 0)));
    }

    #[test]
    fn known_caller_is_greeted_by_name_and_vip_goes_first() {
        let mut call = call().with_customer("+15551230001", "Ada Lovelace", "vip");
        assert_eq!(
            spoken(&call.start())[0],
            "Hello Ada, thank you for calling Acme."
        );
        assert_eq!(queue_of(&call.press("2")), Some(("vip".into(), 10)));
    }

    #[test]
    fn closed_outside_business_hours() {
        let mut call = call().at(18, 30);
        let actions = call.start();
        assert!(spoken(&actions)[1].starts_with("We are closed right now"));
        assert_eq!(actions.last(), Some(&Action::Hangup));
        let mut weekend = Conversation::<IvrMenu>::voice("+1", "+2").on(Weekday::Sunday);
        assert_eq!(weekend.start().last(), Some(&Action::Hangup));
    }

    #[test]
    fn open_all_day() {
        let mut call = call()
            .with_config("open", "00:00")
            .with_config("close", "24:00")
            .at(23, 59);
        assert!(matches!(call.start().last(), Some(Action::Gather(_))));
    }

    #[test]
    fn configured_hours_are_used() {
        let mut call = call()
            .with_config("open", "07:00")
            .with_config("days", "mon-sun")
            .at(7, 15)
            .on(Weekday::Saturday);
        assert!(matches!(call.start().last(), Some(Action::Gather(_))));
    }

    #[test]
    fn eight_reaches_the_operator_only_when_one_is_configured() {
        let mut call = call()
            .with_config("operator", "sip:operator@pbx.example.com")
            .with_config("days", "mon-sun")
            .with_config("open", "00:00")
            .with_config("close", "24:00");
        call.start();
        let actions = call.press("8");
        assert!(
            actions.contains(&Action::transfer("sip:operator@pbx.example.com")),
            "{actions:?}"
        );
    }

    #[test]
    fn star_repeats_and_three_invalid_keys_reach_an_agent() {
        let mut call = call();
        call.start();
        assert!(matches!(call.press("*").as_slice(), [Action::Gather(_)]));
        assert_eq!(
            spoken(&call.press("7"))[0],
            "Sorry, that is not a valid choice."
        );
        call.press("8");
        let last = call.press("9");
        assert_eq!(queue_of(&last), Some(("agents".into(), 0)));
        assert_eq!(call.state().invalid, 3);
    }

    #[test]
    fn a_waiting_caller_hears_their_place_and_can_ask_for_a_callback() {
        let mut call = call();
        call.start();
        call.press("1");
        let wait = call.waiting("sales", 40, 3);
        assert_eq!(
            spoken(&wait)[0],
            "You are number 3 in line. To be called back instead of waiting, press 1."
        );
        assert_eq!(
            call.press("9"),
            vec![],
            "other keys keep the caller waiting"
        );
        let callback = call.press("1");
        assert_eq!(callback.last(), Some(&Action::callback("+15551230001")));
    }

    #[test]
    fn a_canceled_task_puts_the_caller_back_in_line_once() {
        let mut call = call();
        call.start();
        call.press("1");
        let again = call.task("sales", TaskStatus::Canceled);
        assert_eq!(queue_of(&again), Some(("sales".into(), 0)));
        assert_eq!(call.task("sales", TaskStatus::Canceled), vec![]);
    }

    #[test]
    fn silence_ends_politely() {
        let mut call = call();
        call.start();
        let bye = call.silence();
        assert!(spoken(&bye)[0].contains("Goodbye"));
        assert_eq!(bye.last(), Some(&Action::Hangup));
    }
}
