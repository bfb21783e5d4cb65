//! API tokens. Only SHA-256 hashes are stored (tokens are 256 random bits, so a fast hash is
//! enough); the plain token is shown once, when it is created.

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::store::{Store, StoreError, StoreExt, Tree};

/// A stored token.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Its name: the person's for a user's token (recorded in the audit trail).
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// The user it belongs to; none for a token made before users existed (an admin's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What its owner calls it (`laptop`, `ci`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// RFC 3339 time after which it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A token as listed: never its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TokenView {
    /// Its id (the first 16 hex digits of its hash): what revoking names.
    pub id: String,
    /// Its user (or name, for an old admin token).
    pub user: String,
    /// Its label.
    pub label: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 expiry, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

const ID_LEN: usize = 16;

impl From<&TokenRecord> for TokenView {
    fn from(r: &TokenRecord) -> TokenView {
        TokenView {
            id: r.sha256[..ID_LEN.min(r.sha256.len())].to_string(),
            user: r.user.clone().unwrap_or_else(|| r.name.clone()),
            label: r.label.clone(),
            created_at: r.created_at.clone(),
            expires_at: r.expires_at.clone(),
        }
    }
}

/// SHA-256 of a secret, hex: what is stored instead of it.
pub fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether two secrets (signatures, digests) are equal, compared in constant time.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates an API token of `user` and returns its id and the token in plain text (the only
/// time it exists so). `expires_at` (RFC 3339) limits its life.
pub fn create_for(
    store: &dyn Store,
    user: &str,
    label: &str,
    expires_at: Option<String>,
) -> Result<(String, String), StoreError> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("sbt_{}", hex::encode(secret));
    let record = TokenRecord {
        name: user.to_string(),
        sha256: hash(&token),
        created_at: chrono::Utc::now().to_rfc3339(),
        user: Some(user.to_string()),
        label: label.to_string(),
        expires_at,
    };
    store.put_json(Tree::Tokens, &format!("hash/{}", record.sha256), &record)?;
    store.flush()?;
    Ok((TokenView::from(&record).id, token))
}

/// Every API token, oldest first.
pub fn all(store: &dyn Store) -> Result<Vec<TokenView>, StoreError> {
    let mut records: Vec<TokenRecord> = store.scan_json(Tree::Tokens, "hash/")?;
    records.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(records.iter().map(TokenView::from).collect())
}

/// The API tokens of `user`.
pub fn of_user(store: &dyn Store, user: &str) -> Result<Vec<TokenView>, StoreError> {
    Ok(all(store)?.into_iter().filter(|t| t.user == user).collect())
}

/// Revokes the token whose id is `id`; false when there is none.
pub fn revoke(store: &dyn Store, id: &str) -> Result<bool, StoreError> {
    if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let found = store.scan_prefix(Tree::Tokens, format!("hash/{id}").as_bytes())?;
    for (key, _) in &found {
        store.delete(Tree::Tokens, key)?;
    }
    store.flush()?;
    Ok(!found.is_empty())
}

/// The record of the token `presented`, if it is one of ours.
pub fn find(store: &dyn Store, presented: &str) -> Result<Option<TokenRecord>, StoreError> {
    if !presented.starts_with("sbt_") {
        return Ok(None);
    }
    store.get_json::<TokenRecord>(Tree::Tokens, &format!("hash/{}", hash(presented)))
}

/// Whether any token exists yet.
pub fn any(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.scan_prefix(Tree::Tokens, b"hash/")?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hash_is_stored() {
        let store = crate::store::SledStore::temporary().unwrap();
        assert!(!any(&store).unwrap());
        let (id, token) = create_for(&store, "admin", "first start", None).unwrap();
        assert_eq!(find(&store, &token).unwrap().unwrap().name, "admin");
        assert!(find(&store, "sbt_wrong").unwrap().is_none());
        assert_eq!(all(&store).unwrap()[0].id, id);
        let stored = store.scan_prefix(Tree::Tokens, b"").unwrap();
        assert!(!String::from_utf8_lossy(&stored[0].1).contains(&token[4..]));
    }
}
