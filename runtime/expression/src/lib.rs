//! Routing expressions in CEL (the Common Expression Language): queue membership over a
//! worker (`"billing" in worker.skills && worker.level >= 2`) and target filters over a worker
//! and a task (`task.language in worker.languages`). Compiled once when a queue is defined;
//! a typo is refused then, with the parser's message, never discovered while routing.
#![deny(missing_docs)]

use std::sync::Arc;

/// A compiled boolean expression.
#[derive(Clone)]
pub struct Expression {
    source: String,
    program: Option<Arc<cel::Program>>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expression {
    /// Compiles `source`; an empty source or `true` matches everything without evaluating.
    pub fn compile(source: &str) -> Result<Expression, String> {
        let trimmed = source.trim();
        if trimmed.is_empty() || trimmed == "true" {
            return Ok(Expression {
                source: "true".into(),
                program: None,
            });
        }
        let program = cel::Program::compile(trimmed)
            .map_err(|e| format!("{trimmed:?} is not a valid expression: {e}. Write CEL, such as \"billing\" in worker.skills && worker.level >= 2"))?;
        Ok(Expression {
            source: trimmed.to_string(),
            program: Some(Arc::new(program)),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it is the trivial `true`.
    pub fn always(&self) -> bool {
        self.program.is_none()
    }

    /// Evaluates with `worker` and `task` (JSON objects) in scope. An expression that fails
    /// at run time (a missing attribute, a type mismatch) is false: that worker is not
    /// eligible, and routing goes on.
    pub fn matches(&self, worker: &serde_json::Value, task: &serde_json::Value) -> bool {
        let Some(program) = &self.program else {
            return true;
        };
        // Building CEL's standard library is costly: every evaluation shares one.
        static STDLIB: std::sync::LazyLock<Arc<cel::Env>> =
            std::sync::LazyLock::new(|| Arc::new(cel::Env::stdlib()));
        let mut context = cel::Context::with_env(STDLIB.clone());
        let (Ok(w), Ok(t)) = (cel::to_value(worker), cel::to_value(task)) else {
            return false;
        };
        // `agent` is the word everywhere else; `worker` stays for queues written before.
        context.add_variable_from_value("agent", w.clone());
        context.add_variable_from_value("worker", w);
        context.add_variable_from_value("task", t);
        matches!(program.execute(&context), Ok(cel::Value::Bool(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skills_levels_and_task_attributes() {
        let billing =
            Expression::compile(r#""billing" in worker.skills && worker.level >= 2"#).unwrap();
        let ada = json!({"skills": ["billing", "sales"], "level": 3});
        let bob = json!({"skills": ["sales"], "level": 3});
        let cy = json!({"skills": ["billing"], "level": 1});
        assert!(billing.matches(&ada, &json!({})));
        assert!(!billing.matches(&bob, &json!({})));
        assert!(!billing.matches(&cy, &json!({})));
        let agent_words =
            Expression::compile(r#""billing" in agent.skills && agent.level >= 2"#).unwrap();
        assert!(agent_words.matches(&json!({"skills": ["billing"], "level": 2}), &json!({})));
        let language = Expression::compile("task.language in worker.languages").unwrap();
        assert!(language.matches(
            &json!({"languages": ["fr", "en"]}),
            &json!({"language": "fr"})
        ));
        assert!(!language.matches(&json!({"languages": ["en"]}), &json!({"language": "fr"})));
        assert!(
            !language.matches(&json!({}), &json!({"language": "fr"})),
            "a missing attribute is no match"
        );
        assert!(Expression::compile("").unwrap().always());
        let err = Expression::compile("skills HAS (").unwrap_err();
        assert!(err.contains("not a valid expression"), "{err}");
    }
}
