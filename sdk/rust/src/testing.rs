//! Drive a flow through a scripted conversation in `cargo test`, with a fake CRM, key/value
//! store, settings and clock. The flow runs natively through the same [`crate::run_step`]
//! the component export uses, state serialisation included.
//!
//! ```
//! use switchboard_sdk::prelude::*;
//! use switchboard_sdk::testing::Conversation;
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Hours;
//! impl Flow for Hours {
//!     fn handle(&mut self, cx: &mut Context<'_>, _: Event) -> Result<Vec<Action>, FlowError> {
//!         let now = cx.local_time("Europe/Paris").map_err(FlowError::Internal)?;
//!         Ok(vec![Action::say(if now.hour < 9 { "closed" } else { "open" })])
//!     }
//! }
//!
//! let mut call = Conversation::<Hours>::voice("+33100000000", "+33199999999").at(8, 30);
//! assert_eq!(call.start(), vec![Action::say("closed")]);
//! ```

use std::collections::BTreeMap;

use crate::{
    Action, Channel, Contact, Customer, Event, Flow, FlowError, Host, Input, Level, LocalTime,
    LookupKey, TaskOutcome, TaskStatus, Weekday,
};

/// A fake host: customers, key/value pairs, settings and a fixed clock you choose. Log lines
/// are kept in [`TestHost::logs`].
#[derive(Debug, Clone)]
pub struct TestHost {
    /// Customers the fake CRM knows.
    pub customers: Vec<Customer>,
    /// When set, every CRM lookup fails with this message.
    pub crm_error: Option<String>,
    /// The flow's key/value store.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// The flow's settings.
    pub config: BTreeMap<String, String>,
    /// The time every `local_time` call returns, whatever the zone.
    pub local_time: LocalTime,
    /// What `now_ms` returns.
    pub now_ms: u64,
    /// Log lines written by the flow.
    pub logs: Vec<(Level, String)>,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost {
            customers: Vec::new(),
            crm_error: None,
            kv: BTreeMap::new(),
            config: BTreeMap::new(),
            // A Wednesday morning: inside ordinary business hours.
            local_time: LocalTime {
                year: 2026,
                month: 11,
                day: 25,
                weekday: Weekday::Wednesday,
                hour: 10,
                minute: 0,
                second: 0,
                utc_offset_secs: 0,
            },
            now_ms: 1_795_600_000_000,
            logs: Vec::new(),
        }
    }
}

impl Host for TestHost {
    fn crm_lookup(&mut self, key: &LookupKey) -> Result<Option<Customer>, String> {
        if let Some(why) = &self.crm_error {
            return Err(why.clone());
        }
        Ok(self
            .customers
            .iter()
            .find(|c| match key {
                LookupKey::Phone(p) => c.phone.as_deref() == Some(p),
                LookupKey::Email(e) => c.email.as_deref() == Some(e),
                LookupKey::Id(id) => &c.id == id,
            })
            .cloned())
    }
    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.kv.get(key).cloned()
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) {
        self.kv.insert(key.to_string(), value.to_vec());
    }
    fn kv_delete(&mut self, key: &str) {
        self.kv.remove(key);
    }
    fn config(&mut self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
    fn local_time(&mut self, _zone: &str) -> Result<LocalTime, String> {
        Ok(self.local_time)
    }
}

/// One contact talking to flow `F`, event by event, the way the runtime would drive it.
pub struct Conversation<F: Flow> {
    /// The contact as the flow sees it. Attributes set by the flow are applied here.
    pub contact: Contact,
    /// The fake host services.
    pub host: TestHost,
    state: Vec<u8>,
    _flow: std::marker::PhantomData<F>,
}

impl<F: Flow> Conversation<F> {
    /// A contact on `channel` from `from` to `to`.
    pub fn new(channel: Channel, from: &str, to: &str) -> Self {
        Conversation {
            contact: Contact {
                id: "test-contact".to_string(),
                channel,
                from: from.to_string(),
                to: to.to_string(),
                attributes: Vec::new(),
            },
            host: TestHost::default(),
            state: Vec::new(),
            _flow: std::marker::PhantomData,
        }
    }

    /// A phone call from `from` to `to`.
    pub fn voice(from: &str, to: &str) -> Self {
        Self::new(Channel::Voice, from, to)
    }

    /// Make the CRM know a customer with this phone number, name and tier.
    pub fn with_customer(mut self, phone: &str, name: &str, tier: &str) -> Self {
        self.host.customers.push(Customer {
            id: format!("cust-{}", self.host.customers.len() + 1),
            name: name.to_string(),
            phone: Some(phone.to_string()),
            email: None,
            tier: tier.to_string(),
            attributes: Vec::new(),
        });
        self
    }

    /// Start the contact with an attribute (as an entry point or a channel gives it).
    pub fn with_attribute(mut self, key: &str, value: &str) -> Self {
        self.contact
            .attributes
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Give the flow a setting.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.host.config.insert(key.to_string(), value.to_string());
        self
    }

    /// Set the local wall-clock time (same day, a Wednesday) the flow will see.
    pub fn at(mut self, hour: u8, minute: u8) -> Self {
        self.host.local_time.hour = hour;
        self.host.local_time.minute = minute;
        self
    }

    /// Set the weekday the flow will see.
    pub fn on(mut self, weekday: Weekday) -> Self {
        self.host.local_time.weekday = weekday;
        self
    }

    /// Send any event; panics with the flow's error if it returns one (use [`Self::try_send`]
    /// to inspect errors).
    pub fn send(&mut self, event: Event) -> Vec<Action> {
        match self.try_send(event) {
            Ok(actions) => actions,
            Err(e) => panic!("the flow returned an error: {e:?}"),
        }
    }

    /// Send any event and get the flow's result.
    pub fn try_send(&mut self, event: Event) -> Result<Vec<Action>, FlowError> {
        let step = crate::run_step::<F>(&mut self.host, &self.contact, &self.state, event)?;
        self.state = step.state;
        for action in &step.actions {
            if let Action::SetAttribute((key, value)) = action {
                self.contact.attributes.retain(|(k, _)| k != key);
                self.contact.attributes.push((key.clone(), value.clone()));
            }
        }
        Ok(step.actions)
    }

    /// The contact arrives.
    pub fn start(&mut self) -> Vec<Action> {
        self.send(Event::Started)
    }

    /// The caller presses `digits` in answer to a gather.
    pub fn press(&mut self, digits: &str) -> Vec<Action> {
        self.send(Event::Input(Input {
            digits: digits.to_string(),
            speech: None,
        }))
    }

    /// The gather timed out.
    pub fn silence(&mut self) -> Vec<Action> {
        self.send(Event::NoInput)
    }

    /// A text message arrives.
    pub fn message(&mut self, text: &str) -> Vec<Action> {
        self.send(Event::Message(text.to_string()))
    }

    /// An e-mail arrives from `from` with `subject` and the plain-text `text`.
    pub fn mail(&mut self, from: &str, subject: &str, text: &str) -> Vec<Action> {
        self.send(Event::Mail(crate::Mail {
            subject: subject.to_string(),
            from: from.to_string(),
            from_name: None,
            text: text.to_string(),
            attachments: Vec::new(),
        }))
    }

    /// A task of this contact changed status.
    pub fn task(&mut self, queue: &str, status: TaskStatus) -> Vec<Action> {
        self.send(Event::TaskOutcome(TaskOutcome {
            queue: queue.to_string(),
            status,
            agent: None,
        }))
    }

    /// The contact has waited `waited_secs` in `queue` and is at `position` in line.
    pub fn waiting(&mut self, queue: &str, waited_secs: u32, position: u32) -> Vec<Action> {
        self.send(Event::QueueWait(crate::QueueWait {
            queue: queue.to_string(),
            waited_secs,
            position,
        }))
    }

    /// The customer hangs up.
    pub fn hang_up(&mut self) -> Vec<Action> {
        self.send(Event::Hangup)
    }

    /// The flow's current state, decoded.
    pub fn state(&self) -> F {
        if self.state.is_empty() {
            F::default()
        } else {
            serde_json::from_slice(&self.state).expect("the flow's own state decodes")
        }
    }
}

/// Everything said or asked in `actions`, as plain text, in order: handy for assertions.
///
/// ```
/// # use switchboard_sdk::prelude::*;
/// let actions = vec![Action::say("Hi."), Action::gather(Gather::digits(1).say("Press 1."))];
/// assert_eq!(switchboard_sdk::testing::spoken(&actions), vec!["Hi.", "Press 1."]);
/// ```
pub fn spoken(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for action in actions {
        match action {
            Action::Say(s) => out.push(s.text.clone()),
            Action::Send(t) => out.push(t.clone()),
            Action::Gather(g) => {
                for p in &g.prompt {
                    if let crate::Prompt::Say(s) = p {
                        out.push(s.text.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}
