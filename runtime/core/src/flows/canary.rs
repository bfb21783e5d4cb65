//! Canaries: a candidate version that takes a share of new contacts, or the contacts that
//! match a rule, before it is promoted (or aborted, by an admin or by its own fault rate).

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A candidate version and who it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Canary {
    /// The candidate version.
    pub version: u64,
    /// Share of new contacts, 0-100, chosen by caller so the same caller keeps the same
    /// version for the whole canary.
    pub percent: u8,
    /// Contacts matching any of these go to the candidate whatever the percentage.
    #[serde(default)]
    pub matches: Vec<Match>,
    /// RFC 3339 start.
    pub started_at: String,
}

/// `from=+15551230001`, `to=+15550100`, or any contact attribute `tier=vip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Match {
    /// `from`, `to` or an attribute name.
    pub field: String,
    /// The value it must equal.
    pub value: String,
}

/// Who a new contact is, for choosing its version.
pub struct Arrival<'a> {
    /// Customer address.
    pub from: &'a str,
    /// Address reached.
    pub to: &'a str,
    /// Attributes it starts with.
    pub attributes: &'a [(String, String)],
}

impl Match {
    /// Parses `field=value`.
    pub fn parse(text: &str) -> Result<Match, String> {
        match text.split_once('=') {
            Some((field, value)) if !field.trim().is_empty() => Ok(Match {
                field: field.trim().to_string(),
                value: value.to_string(),
            }),
            _ => Err(format!(
                "canary rule {text:?} is not FIELD=VALUE (such as to=+15550100 or tier=vip)"
            )),
        }
    }

    fn matches(&self, arrival: &Arrival<'_>) -> bool {
        match self.field.as_str() {
            "from" => arrival.from == self.value,
            "to" => arrival.to == self.value,
            key => arrival
                .attributes
                .iter()
                .any(|(k, v)| k == key && *v == self.value),
        }
    }
}

impl Canary {
    /// Whether this arrival goes to the candidate.
    pub fn takes(&self, flow: &str, arrival: &Arrival<'_>) -> bool {
        if self.matches.iter().any(|m| m.matches(arrival)) {
            return true;
        }
        bucket(flow, self.version, arrival.from) < u32::from(self.percent)
    }
}

/// A stable bucket 0-99 for a caller of a canary.
fn bucket(flow: &str, version: u64, from: &str) -> u32 {
    let digest = sha2::Sha256::digest(format!("{flow}/{version}/{from}").as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_close_to_the_percentage_and_sticky_per_caller() {
        let canary = Canary {
            version: 2,
            percent: 30,
            matches: vec![Match::parse("to=+15550199").unwrap()],
            started_at: String::new(),
        };
        let callers: Vec<String> = (0..2000).map(|i| format!("+1555{i:07}")).collect();
        let arrival = |from: &str, to: &'static str| (from.to_string(), to);
        let taken = callers
            .iter()
            .filter(|c| {
                let (from, to) = arrival(c, "+15550100");
                canary.takes(
                    "main",
                    &Arrival {
                        from: &from,
                        to,
                        attributes: &[],
                    },
                )
            })
            .count();
        assert!((500..700).contains(&taken), "{taken} of 2000");
        let first = &callers[0];
        let a = Arrival {
            from: first,
            to: "+15550100",
            attributes: &[],
        };
        assert_eq!(canary.takes("main", &a), canary.takes("main", &a));
        let matched = Arrival {
            from: first,
            to: "+15550199",
            attributes: &[],
        };
        assert!(canary.takes("main", &matched));
        let attrs = vec![("tier".to_string(), "vip".to_string())];
        let vip = Canary {
            percent: 0,
            matches: vec![Match::parse("tier=vip").unwrap()],
            ..canary
        };
        assert!(vip.takes(
            "main",
            &Arrival {
                from: first,
                to: "+1",
                attributes: &attrs
            }
        ));
        assert!(!vip.takes(
            "main",
            &Arrival {
                from: first,
                to: "+1",
                attributes: &[]
            }
        ));
        assert!(Match::parse("nothing").is_err());
    }
}
