//! Any routing expression an admin may write for a queue or a workflow filter: compiled or
//! refused with a message, never a panic; what compiles evaluates over an agent and a task to
//! a match or not, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use switchboard_expression::Expression;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expression) = Expression::compile(source) else {
        return;
    };
    let agent =
        json!({"skills": ["billing", "sales"], "level": 2, "languages": ["fr"], "name": "ann"});
    let task = json!({"language": "fr", "tier": "vip", "priority": 3, "queue": "sales"});
    let _ = expression.matches(&agent, &task);
    let _ = expression.matches(&json!({}), &json!(null));
});
