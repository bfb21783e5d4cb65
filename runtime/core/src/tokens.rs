//! API tokens. Only SHA-256 hashes are stored (tokens are 256 random bits, so a fast hash is
//! enough); the plain token is shown once, when it is created.

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::store::{Store, StoreError, StoreExt, Tree};

/// A stored token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its name, recorded in the audit trail.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether two secrets (signatures, digests) are equal, compared in constant time.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates a token named `name` and returns it in plain text (the only time it exists so).
pub fn create(store: &dyn Store, name: &str) -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("sbt_{}", hex::encode(secret));
    let record = TokenRecord {
        name: name.to_string(),
        sha256: hash(&token),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    store.put_json(Tree::Tokens, &format!("hash/{}", record.sha256), &record)?;
    store.flush()?;
    Ok(token)
}

/// Whether any token exists yet.
pub fn any(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.scan_prefix(Tree::Tokens, b"hash/")?.is_empty())
}

/// The name of the token `presented`, if it is one of ours.
pub fn verify(store: &dyn Store, presented: &str) -> Result<Option<String>, StoreError> {
    if !presented.starts_with("sbt_") {
        return Ok(None);
    }
    Ok(store
        .get_json::<TokenRecord>(Tree::Tokens, &format!("hash/{}", hash(presented)))?
        .map(|r| r.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hash_is_stored() {
        let store = crate::store::SledStore::temporary().unwrap();
        assert!(!any(&store).unwrap());
        let token = create(&store, "admin").unwrap();
        assert_eq!(verify(&store, &token).unwrap().as_deref(), Some("admin"));
        assert_eq!(verify(&store, "sbt_wrong").unwrap(), None);
        let stored = store.scan_prefix(Tree::Tokens, b"").unwrap();
        assert!(!String::from_utf8_lossy(&stored[0].1).contains(&token[4..]));
    }
}
