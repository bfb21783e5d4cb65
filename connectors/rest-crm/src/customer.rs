//! A customer from the CRM's JSON.

use serde_json::{Map, Value};

/// A customer as the connector returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub tier: String,
    pub attributes: Vec<(String, String)>,
}

/// The customer in `json`: an object, a list (the first counts) or a list under `customers`,
/// `data` or `results`. `Ok(None)` for an empty list.
pub fn from_json(json: &Value, tier_field: &str) -> Result<Option<Customer>, String> {
    let record = match json {
        Value::Array(list) => list.first(),
        Value::Object(map) => match ["customers", "data", "results"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_array))
        {
            Some(list) => list.first(),
            None => Some(json),
        },
        _ => return Err("the CRM's answer is neither a customer object nor a list".into()),
    };
    let Some(record) = record else {
        return Ok(None);
    };
    let Value::Object(fields) = record else {
        return Err("the CRM's customer is not a JSON object".into());
    };
    let id = text(fields, "id").ok_or("the CRM's customer has no id")?;
    let name = match text(fields, "name") {
        Some(name) => name,
        None => [text(fields, "first_name"), text(fields, "last_name")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    };
    if name.is_empty() {
        return Err(format!("the CRM's customer {id} has no name"));
    }
    let known = [
        "id",
        "name",
        "first_name",
        "last_name",
        "phone",
        "email",
        tier_field,
    ];
    let attributes = fields
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
        .collect();
    Ok(Some(Customer {
        id,
        name,
        phone: text(fields, "phone"),
        email: text(fields, "email"),
        tier: text(fields, tier_field).unwrap_or_else(|| "standard".into()),
        attributes,
    }))
}

fn text(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields.get(key).and_then(scalar).filter(|s| !s.is_empty())
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_lists_and_wrapped_lists() {
        let ada = json!({"id": 7, "first_name": "Ada", "last_name": "Lovelace", "phone": "+15551230001",
            "segment": "gold", "since": 2019, "active": true, "address": {"city": "London"}});
        let c = from_json(&ada, "segment").unwrap().unwrap();
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.tier.as_str()),
            ("7", "Ada Lovelace", "gold")
        );
        assert_eq!(c.phone.as_deref(), Some("+15551230001"));
        assert_eq!(
            c.attributes,
            vec![
                ("active".to_string(), "true".to_string()),
                ("since".to_string(), "2019".to_string())
            ]
        );
        let listed = from_json(&json!([{"id": "c1", "name": "Bo"}]), "tier")
            .unwrap()
            .unwrap();
        assert_eq!(
            (listed.name.as_str(), listed.tier.as_str()),
            ("Bo", "standard")
        );
        let wrapped = from_json(&json!({"data": [{"id": "c2", "name": "Cy"}]}), "tier").unwrap();
        assert_eq!(wrapped.unwrap().id, "c2");
        assert_eq!(from_json(&json!([]), "tier").unwrap(), None);
        assert_eq!(from_json(&json!({"customers": []}), "tier").unwrap(), None);
    }

    #[test]
    fn unusable_answers_say_why() {
        assert!(
            from_json(&json!("nope"), "tier")
                .unwrap_err()
                .contains("neither")
        );
        assert!(
            from_json(&json!([1]), "tier")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            from_json(&json!({"name": "x"}), "tier")
                .unwrap_err()
                .contains("no id")
        );
        assert!(
            from_json(&json!({"id": "1"}), "tier")
                .unwrap_err()
                .contains("no name")
        );
    }
}
