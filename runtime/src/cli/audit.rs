//! `switchboard audit`: the audit trail, oldest first, one change a line: when, who, what,
//! on which flow or address, and its details as `key=value`; `--json` prints the server's
//! answer for scripts.

use clap::Args;
use serde_json::Value;

use super::Remote;
use super::client::Client;
use super::output::Format;
use crate::audit::AuditEntry;

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    format: Format,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let answer = Client::new(&args.remote)?.get("/v1/audit")?;
    args.format
        .print(answer, "audit trail", |entries: &Vec<AuditEntry>| {
            table(entries)
        })
}

fn table(entries: &[AuditEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}  {:<10} {:<15} {:<20} {}\n",
                e.at,
                e.who,
                e.action,
                e.subject,
                readable(&e.detail)
            )
        })
        .collect()
}

/// A detail as a person reads it: a string as it is, an object as `key=value` pairs, a list
/// of `[key, value]` pairs (settings) as `key=value` too.
fn readable(detail: &Value) -> String {
    match detail {
        Value::String(text) => text.clone(),
        Value::Object(map) => object_pairs(map).join(" "),
        Value::Array(items) => list_items(items).join(" "),
        other => nested(other),
    }
}

fn object_pairs(map: &serde_json::Map<String, Value>) -> Vec<String> {
    map.iter()
        .map(|(key, value)| format!("{key}={}", nested(value)))
        .collect()
}

/// A list's items, `[key, value]` pairs as `key=value`.
fn list_items(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item.as_array().map(Vec::as_slice) {
            Some([Value::String(key), value]) => format!("{key}={}", nested(value)),
            _ => nested(item),
        })
        .collect()
}

/// A value inside a detail: quoted only when it has spaces (so that pairs stay apart),
/// `none` for null, objects in braces and lists in brackets.
fn nested(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(text) if text.is_empty() || text.contains(char::is_whitespace) => {
            format!("{text:?}")
        }
        Value::String(text) => text.clone(),
        Value::Object(map) => format!("{{{}}}", object_pairs(map).join(" ")),
        Value::Array(items) => format!("[{}]", list_items(items).join(", ")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn details_read_as_key_value_pairs() {
        assert_eq!(
            readable(&json!({"from": null, "to": 1, "size": 181917})),
            "from=none size=181917 to=1"
        );
        assert_eq!(
            readable(&json!([["open", "09:00"], ["close", "17:00"]])),
            "open=09:00 close=17:00"
        );
        assert_eq!(
            readable(&json!({"canary": 2, "live": 1, "reason": "fault rate 60% is over"})),
            "canary=2 live=1 reason=\"fault rate 60% is over\""
        );
        assert_eq!(
            readable(
                &json!({"matches": [{"field": "from", "value": "+15551230003"}], "percent": 10})
            ),
            "matches=[{field=from value=+15551230003}] percent=10"
        );
        assert_eq!(readable(&json!("plain words")), "plain words");
        assert_eq!(readable(&json!(null)), "none");
    }
}
