//! Short constructors for the actions a flow returns, so flows read like the script of a call.

use crate::bindings::switchboard::flow::types::Gather;
use crate::{Action, Enqueue, Prompt, Say};

fn say(text: &str) -> Say {
    Say {
        text: text.to_string(),
        voice: None,
        language: None,
    }
}

impl Action {
    /// Speak `text` (voice) or send it (text channels) in the channel's default voice.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let hello = Action::say("Thanks for calling.");
    /// ```
    pub fn say(text: &str) -> Action {
        Action::Say(say(text))
    }

    /// Speak `text` with a given voice and language (BCP 47, such as `fr-FR`).
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let bonjour = Action::say_in("Bonjour.", "fr-FR");
    /// ```
    pub fn say_in(text: &str, language: &str) -> Action {
        Action::Say(Say {
            language: Some(language.to_string()),
            ..say(text)
        })
    }

    /// Play a recorded prompt uploaded by an admin.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let music = Action::play("hold-music");
    /// ```
    pub fn play(prompt: &str) -> Action {
        Action::Play(prompt.to_string())
    }

    /// Send a text message on an sms, chat or e-mail contact.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let reply = Action::send("Your order has shipped.");
    /// ```
    pub fn send(text: &str) -> Action {
        Action::Send(text.to_string())
    }

    /// Ask for input; the answer comes back as [`crate::Event::Input`] or
    /// [`crate::Event::NoInput`].
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let menu = Action::gather(Gather::digits(1).say("Press 1 for sales.").retries(2));
    /// ```
    pub fn gather(gather: crate::actions::GatherBuilder) -> Action {
        Action::Gather(gather.0)
    }

    /// Queue the contact for a human agent at normal priority.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let to_sales = Action::enqueue("sales");
    /// ```
    pub fn enqueue(queue: &str) -> Action {
        Action::enqueue_with(queue, 0, &[])
    }

    /// Queue the contact with a priority (higher goes first) and task attributes for routing.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let vip = Action::enqueue_with("vip", 10, &[("tier", "vip")]);
    /// ```
    pub fn enqueue_with(queue: &str, priority: i32, attributes: &[(&str, &str)]) -> Action {
        Action::Enqueue(Enqueue {
            queue: queue.to_string(),
            priority,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_secs: 0,
        })
    }

    /// Transfer the contact to a phone number or SIP URI.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let out = Action::transfer("+15550199");
    /// ```
    pub fn transfer(target: &str) -> Action {
        Action::Transfer(target.to_string())
    }

    /// While queued: keep the caller's place, end the call, and have the agent call back
    /// `number` when the task is answered.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let later = Action::callback("+15551230001");
    /// ```
    pub fn callback(number: &str) -> Action {
        Action::Callback(number.to_string())
    }

    /// Set an attribute of the contact (visible to later steps and to agents).
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let tagged = Action::set_attribute("intent", "billing");
    /// ```
    pub fn set_attribute(key: &str, value: &str) -> Action {
        Action::SetAttribute((key.to_string(), value.to_string()))
    }
}

/// Builds a `gather` action: what to ask, how many digits, how long to wait.
///
/// ```
/// # use switchboard_sdk::prelude::*;
/// let pin = Gather::digits(4).say("Enter your PIN, then press pound.").finish_on_key('#');
/// let action = Action::gather(pin);
/// ```
#[derive(Debug, Clone)]
pub struct GatherBuilder(Gather);

impl GatherBuilder {
    /// Collect up to `max` digits (0: no limit, stop at the finish key or timeout). Waits 5 s
    /// for input and asks once.
    pub fn digits(max: u32) -> Self {
        GatherBuilder(Gather {
            prompt: Vec::new(),
            max_digits: max,
            timeout_ms: 5_000,
            finish_on_key: None,
            retries: 0,
            flush: false,
        })
    }

    /// Add a sentence to the prompt.
    pub fn say(mut self, text: &str) -> Self {
        self.0.prompt.push(Prompt::Say(say(text)));
        self
    }

    /// Add a recorded prompt to the prompt.
    pub fn play(mut self, prompt: &str) -> Self {
        self.0.prompt.push(Prompt::Play(prompt.to_string()));
        self
    }

    /// How long to wait for a digit, in milliseconds.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.0.timeout_ms = ms;
        self
    }

    /// A key that ends the input early (not part of the digits).
    pub fn finish_on_key(mut self, key: char) -> Self {
        self.0.finish_on_key = Some(key.to_string());
        self
    }

    /// Replay the prompt this many times when nothing is entered, before `no-input`.
    pub fn retries(mut self, retries: u32) -> Self {
        self.0.retries = retries;
        self
    }

    /// Drop digits the caller pressed while the step's earlier prompts played. By default
    /// they are kept and answer this gather at once (type-ahead), so a caller who knows the
    /// menu need not wait for it; flush for a question the caller must hear first.
    ///
    /// ```
    /// # use switchboard_sdk::prelude::*;
    /// let confirm = Gather::digits(1).say("Press 1 to confirm the payment.").flush();
    /// ```
    pub fn flush(mut self) -> Self {
        self.0.flush = true;
        self
    }
}
