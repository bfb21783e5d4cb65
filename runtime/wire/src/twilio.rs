//! Twilio's webhooks: a form post (`application/x-www-form-urlencoded`), signed with
//! `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed by the account's auth token, over the full
//! public URL of the request followed by every POST parameter, sorted by name, as name+value.
//! The public URL is configured, because behind a TLS-terminating proxy the URL Twilio signed
//! is not the one the server sees.

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The parameters of a webhook's form body, in order; why not, when it is not a form.
pub fn form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<sha1::Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The signature Twilio sends for `url` and `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `presented` is the right signature (compared in constant time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], presented: &str) -> bool {
    let Ok(presented) = base64::engine::general_purpose::STANDARD.decode(presented.trim()) else {
        return false;
    };
    mac(auth_token, url, params)
        .verify_slice(&presented)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_documented_example() {
        // The example from Twilio's security documentation.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let signature = sign("12345", url, &params);
        assert_eq!(signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", url, &params, &signature));
        assert!(verify("12345", url, &params, &format!(" {signature} ")));
        assert!(!verify(
            "12345",
            "https://mycompany.com/other",
            &params,
            &signature
        ));
        assert!(!verify("wrong", url, &params, &signature));
        assert!(!verify("12345", url, &params, "not base64!"));
        assert!(!verify("12345", url, &params, ""));
    }

    #[test]
    fn forms_decode_or_say_why() {
        assert_eq!(
            form(b"From=%2B1555&Body=hi+there").unwrap(),
            [
                ("From".to_string(), "+1555".to_string()),
                ("Body".to_string(), "hi there".to_string())
            ]
        );
        assert!(form(b"a=%ff").is_err() || form(b"a=%ff").is_ok());
    }
}
