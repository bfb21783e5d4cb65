//! HTTP digest authentication for SIP (RFC 2617 as used by RFC 3261 §22), MD5, with or
//! without `qop=auth`: how an agent's phone proves it holds the agent's token when it
//! registers.

use md5::{Digest as _, Md5};

/// The realm phones authenticate in (the router keeps each agent's HA1 for it).
pub const REALM: &str = crate::router::SIP_REALM;

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// RFC 2617's HA1 of `user` and `password` in our realm.
pub fn ha1(user: &str, password: &str) -> String {
    md5_hex(&format!("{user}:{REALM}:{password}"))
}

/// A challenge nonce for time `secs` (Unix seconds): the time and its signature under `key`,
/// so it can be checked later without having been kept.
pub fn nonce(key: &[u8], secs: u64) -> String {
    format!("{secs:x}-{}", nonce_signature(key, secs))
}

/// Whether `nonce` was made with `key` less than `lifetime` before `now_secs`.
pub fn nonce_is_fresh(
    key: &[u8],
    nonce: &str,
    now_secs: u64,
    lifetime: std::time::Duration,
) -> bool {
    let Some((secs, signature)) = nonce.split_once('-') else {
        return false;
    };
    let Ok(secs) = u64::from_str_radix(secs, 16) else {
        return false;
    };
    let expected = nonce_signature(key, secs);
    crate::tokens::same_secret(expected.as_bytes(), signature.as_bytes())
        && secs <= now_secs + 5
        && now_secs.saturating_sub(secs) < lifetime.as_secs()
}

fn nonce_signature(key: &[u8], secs: u64) -> String {
    use hmac::{Hmac, Mac as _};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&secs.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The parameters of an `Authorization: Digest ...` header.
#[derive(Debug, Default, PartialEq)]
pub struct Credentials {
    /// username.
    pub username: String,
    /// realm.
    pub realm: String,
    /// nonce.
    pub nonce: String,
    /// uri.
    pub uri: String,
    /// response.
    pub response: String,
    /// qop (`auth` or empty).
    pub qop: String,
    /// nc.
    pub nc: String,
    /// cnonce.
    pub cnonce: String,
    /// opaque (a challenge's, echoed back).
    pub opaque: String,
    /// algorithm (MD5 when empty).
    pub algorithm: String,
}

/// Parses a Digest header value; `None` when it is not one.
pub fn parse(header: &str) -> Option<Credentials> {
    let rest = header.trim().strip_prefix("Digest")?.trim_start();
    let mut out = Credentials::default();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() {
            break;
        }
        chars.next()?; // '='
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v = std::iter::from_fn(|| chars.next_if(|c| *c != '"')).collect();
            chars.next()?; // closing quote
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "username" => out.username = value,
            "realm" => out.realm = value,
            "nonce" => out.nonce = value,
            "uri" => out.uri = value,
            "response" => out.response = value.to_ascii_lowercase(),
            "qop" => out.qop = value,
            "nc" => out.nc = value,
            "cnonce" => out.cnonce = value,
            "opaque" => out.opaque = value,
            "algorithm" => out.algorithm = value,
            _ => {}
        }
    }
    Some(out)
}

/// Our answer to a peer's challenge (`WWW-Authenticate` or `Proxy-Authenticate`) for a
/// request `method` to `uri`, as `user` with `password`: MD5, with `qop=auth` when the
/// challenge offers it. `None` for a challenge we cannot answer (another algorithm).
pub fn answer(
    challenge: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Option<String> {
    let c = parse(challenge)?;
    if !c.algorithm.is_empty() && !c.algorithm.eq_ignore_ascii_case("MD5") {
        return None;
    }
    let ha1 = md5_hex(&format!("{user}:{}:{password}", c.realm));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let auth = c.qop.split(',').any(|q| q.trim() == "auth");
    let (response, qop) = if auth {
        let cnonce = hex::encode(rand::random::<[u8; 8]>());
        (
            md5_hex(&format!("{ha1}:{}:00000001:{cnonce}:auth:{ha2}", c.nonce)),
            format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\""),
        )
    } else {
        (md5_hex(&format!("{ha1}:{}:{ha2}", c.nonce)), String::new())
    };
    let opaque = if c.opaque.is_empty() {
        String::new()
    } else {
        format!(", opaque=\"{}\"", c.opaque)
    };
    Some(format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5{qop}{opaque}",
        c.realm, c.nonce
    ))
}

/// Whether `credentials` answer the challenge for `method` given the user's HA1.
pub fn verify(credentials: &Credentials, method: &str, ha1: &str) -> bool {
    let ha2 = md5_hex(&format!("{method}:{}", credentials.uri));
    let expected = if credentials.qop.is_empty() {
        md5_hex(&format!("{ha1}:{}:{ha2}", credentials.nonce))
    } else {
        md5_hex(&format!(
            "{ha1}:{}:{}:{}:{}:{ha2}",
            credentials.nonce, credentials.nc, credentials.cnonce, credentials.qop
        ))
    };
    crate::tokens::same_secret(expected.as_bytes(), credentials.response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_answers_to_a_challenge_verify_with_and_without_qop() {
        for challenge in [
            "Digest realm=\"trunk.example\", nonce=\"abc\", qop=\"auth,auth-int\", opaque=\"xyz\"",
            "Digest realm=\"trunk.example\", nonce=\"abc\", algorithm=MD5",
        ] {
            let said = answer(challenge, "INVITE", "sip:+1555@trunk", "us", "pw").unwrap();
            let credentials = parse(&said).unwrap();
            let ha1 = md5_hex("us:trunk.example:pw");
            assert!(verify(&credentials, "INVITE", &ha1), "{said}");
            assert!(!verify(
                &credentials,
                "INVITE",
                &md5_hex("us:trunk.example:no")
            ));
        }
        assert_eq!(
            answer(
                "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256",
                "INVITE",
                "sip:x",
                "u",
                "p"
            ),
            None
        );
    }

    #[test]
    fn nonces_are_checked_by_signature_and_age() {
        let key = b"0123456789abcdef0123456789abcdef";
        let lifetime = std::time::Duration::from_secs(300);
        let n = nonce(key, 1_000);
        assert!(nonce_is_fresh(key, &n, 1_000, lifetime));
        assert!(nonce_is_fresh(key, &n, 1_299, lifetime));
        assert!(!nonce_is_fresh(key, &n, 1_300, lifetime), "expired");
        assert!(
            !nonce_is_fresh(b"another key", &n, 1_000, lifetime),
            "not ours"
        );
        assert!(!nonce_is_fresh(key, &n.replace('-', "-0"), 1_000, lifetime));
        assert!(
            !nonce_is_fresh(key, &nonce(key, 2_000), 1_000, lifetime),
            "from the future"
        );
        assert!(!nonce_is_fresh(key, "garbage", 1_000, lifetime));
    }

    #[test]
    fn the_rfc_2617_example() {
        // RFC 2617 §3.5, with its realm swapped for ours: the same computation.
        let creds = parse(r#"Digest username="Mufasa", realm="switchboard", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="RESPONSE", opaque="5ccc069c403ebaf9f0171e9517f40e41""#).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.nc, "00000001");
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
        let mut creds = creds;
        creds.response = "6629fae49393a05397450978507c4ef1".into();
        assert!(verify(&creds, "GET", &ha1));
        creds.response = "6629fae49393a05397450978507c4ef2".into();
        assert!(!verify(&creds, "GET", &ha1));
        assert!(parse("Basic abc").is_none());
    }
}
