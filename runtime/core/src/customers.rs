//! The built-in CRM's customer records: loaded by admins from CSV or JSON, looked up by flows
//! through the `crm` interface. A CRM connector component replaces it in a later release.

use std::sync::Arc;

use serde_json::json;

use crate::audit;
use crate::contract::Customer;
use crate::engine::bindings::LookupKey;
use crate::engine::host::crm_index_key;
use crate::store::{Store, StoreError, StoreExt, Tree};

/// Why a customer file was refused. Nothing was loaded.
#[derive(Debug, thiserror::Error)]
pub enum CustomersError {
    /// The file does not parse.
    #[error("{0}")]
    Malformed(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses customers from JSON (an array of objects) or CSV (a header row with `id`, `name`,
/// and optionally `phone`, `email`, `tier`; other columns become attributes).
pub fn parse(text: &str) -> Result<Vec<Customer>, CustomersError> {
    let trimmed = text.trim_start();
    let customers: Vec<Customer> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| {
            CustomersError::Malformed(format!("the JSON customer list does not parse: {e}"))
        })?
    } else {
        parse_csv(text)?
    };
    for (i, c) in customers.iter().enumerate() {
        if c.id.trim().is_empty() || c.name.trim().is_empty() {
            return Err(CustomersError::Malformed(format!(
                "customer #{} has an empty id or name",
                i + 1
            )));
        }
    }
    Ok(customers)
}

fn parse_csv(text: &str) -> Result<Vec<Customer>, CustomersError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| CustomersError::Malformed(format!("the CSV header does not parse: {e}")))?
        .clone();
    for needed in ["id", "name"] {
        if !headers.iter().any(|h| h == needed) {
            return Err(CustomersError::Malformed(format!(
                "the CSV has no `{needed}` column; expected a header such as id,name,phone,email,tier"
            )));
        }
    }
    let mut out = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row =
            row.map_err(|e| CustomersError::Malformed(format!("CSV row {}: {e}", line + 2)))?;
        let mut customer = Customer {
            id: String::new(),
            name: String::new(),
            phone: None,
            email: None,
            tier: "standard".into(),
            attributes: Vec::new(),
        };
        for (header, value) in headers.iter().zip(row.iter()) {
            let some = || (!value.is_empty()).then(|| value.to_string());
            match header {
                "id" => customer.id = value.to_string(),
                "name" => customer.name = value.to_string(),
                "phone" => customer.phone = some(),
                "email" => customer.email = some(),
                "tier" if !value.is_empty() => customer.tier = value.to_string(),
                "tier" => {}
                other => customer
                    .attributes
                    .push((other.to_string(), value.to_string())),
            }
        }
        out.push(customer);
    }
    Ok(out)
}

/// Stores `customers` (replacing records with the same id) and their lookup indexes.
pub fn load(
    store: &Arc<dyn Store>,
    customers: &[Customer],
    who: &str,
) -> Result<usize, CustomersError> {
    for c in customers {
        store.put_json(
            Tree::Customers,
            &crm_index_key(&LookupKey::Id(c.id.clone())),
            c,
        )?;
        if let Some(phone) = &c.phone {
            store.put_json(
                Tree::Customers,
                &crm_index_key(&LookupKey::Phone(phone.clone())),
                &c.id,
            )?;
        }
        if let Some(email) = &c.email {
            store.put_json(
                Tree::Customers,
                &crm_index_key(&LookupKey::Email(email.clone())),
                &c.id,
            )?;
        }
    }
    audit::record(
        &**store,
        who,
        "load-customers",
        "crm",
        json!({"count": customers.len()}),
    )?;
    store.flush()?;
    Ok(customers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_extra_columns_and_json() {
        let csv =
            "id,name,phone,tier,account\nc1,Ada Lovelace,+15551230001,vip,A-1\nc2,Alan Turing,,,\n";
        let customers = parse(csv).unwrap();
        assert_eq!(customers[0].tier, "vip");
        assert_eq!(
            customers[0].attributes,
            vec![("account".to_string(), "A-1".to_string())]
        );
        assert_eq!(customers[1].phone, None);
        assert_eq!(customers[1].tier, "standard");
        let json = r#"[{"id":"c3","name":"Grace Hopper","email":"grace@navy.test"}]"#;
        assert_eq!(
            parse(json).unwrap()[0].email.as_deref(),
            Some("grace@navy.test")
        );
        assert!(
            parse("name,phone\nx,1\n")
                .unwrap_err()
                .to_string()
                .contains("no `id` column")
        );
        assert!(parse("[{\"id\": 3}]").is_err());
    }
}
