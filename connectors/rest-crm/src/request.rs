//! The CRM's address and request values.

/// Whether the CRM is reached over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Https {
    /// `https://`.
    Yes,
    /// `http://`.
    No,
}

/// The CRM's address, from the `base_url` setting.
#[derive(Debug)]
pub struct Base {
    /// Whether to use TLS.
    pub https: Https,
    pub authority: String,
    /// Without a trailing slash.
    pub path: String,
}

impl Base {
    pub fn parse(url: &str) -> Result<Base, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Https::Yes, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Https::No, rest)
        } else {
            return Err(format!(
                "base_url {url:?} is not an http:// or https:// URL: switchboard settings crm base_url=https://crm.example.com/api"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("base_url {url:?} names no host"));
        }
        Ok(Base {
            https: scheme,
            authority: authority.to_string(),
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// Percent-encodes a query or path value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = Base::parse("https://crm.example.com/api/v2/").unwrap();
        assert_eq!(b.https, Https::Yes);
        assert_eq!(b.authority, "crm.example.com");
        assert_eq!(b.path, "/api/v2");
        let b = Base::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (b.authority.as_str(), b.path.as_str()),
            ("127.0.0.1:8080", "")
        );
        assert!(Base::parse("ftp://x").unwrap_err().contains("http://"));
        assert!(Base::parse("https:///api").unwrap_err().contains("no host"));
    }

    #[test]
    fn values_are_encoded() {
        assert_eq!(encode("+1 555/0"), "%2B1%20555%2F0");
        assert_eq!(encode("ada@example.com"), "ada%40example.com");
    }
}
