// The router's code, included by `lib.rs` and by the same router built against contract 0.1.0
// (`tests/guests/language-router-0-1`): each defines `bindings` for its contract version.

use bindings::switchboard::flow::routing::{Plan, Target, Task};

/// The router component.
pub struct LanguageRouter;

impl LanguageRouter {
    /// The plan for `task`.
    pub fn plan(task: &Task, language_wait_secs: u32) -> Plan {
        let attribute = |key: &str| {
            task.attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let mut priority = task.priority;
        if attribute("tier") == Some("vip") {
            priority += 10;
        }
        let mut targets = Vec::new();
        if let Some(language) = attribute("language").filter(|l| !l.eq_ignore_ascii_case("en")) {
            targets.push(Target {
                workers: format!("{:?} in worker.languages", language),
                timeout_secs: language_wait_secs,
            });
            targets.push(Target {
                workers: String::new(),
                timeout_secs: 0,
            });
        }
        Plan {
            queue: task.queue.clone(),
            priority,
            targets,
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl bindings::Guest for LanguageRouter {
    fn route(task: Task) -> Result<Plan, String> {
        let wait = bindings::switchboard::flow::config::get("language_wait_secs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        Ok(LanguageRouter::plan(&task, wait))
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(LanguageRouter with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::switchboard::flow::types::Channel;

    fn task(attributes: &[(&str, &str)]) -> Task {
        Task {
            id: "t1".into(),
            queue: "support".into(),
            channel: Channel::Voice,
            priority: 0,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn french_speakers_first_then_everyone_and_vips_go_first() {
        let plan = LanguageRouter::plan(&task(&[("language", "fr"), ("tier", "vip")]), 20);
        assert_eq!(plan.priority, 10);
        assert_eq!(plan.targets[0].workers, "\"fr\" in worker.languages");
        assert_eq!(plan.targets[0].timeout_secs, 20);
        assert_eq!(plan.targets[1].workers, "");
        let english = LanguageRouter::plan(&task(&[("language", "en")]), 20);
        assert!(english.targets.is_empty(), "English keeps the queue's plan");
    }
}
