//! Agents' registered phones (SIP registrations) and the key that signs registration
//! challenges, kept in the store: a restart, or another node, still reaches a phone that
//! registered before it. Owns these records only; never speaks SIP.

use serde::{Deserialize, Serialize};

use crate::store::{Batch, Store, StoreError, StoreExt, Tree};

/// Where the challenge-signing key is kept in [`Tree::Meta`].
const NONCE_KEY: &[u8] = b"sip-nonce-key";

/// One agent's registered phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Phone {
    /// The Contact URI it registered.
    pub uri: String,
    /// `udp` or `tcp`: how it registered, and how calls reach it.
    pub transport: String,
    /// The address it registered from (calls go there).
    pub addr: String,
    /// When the registration lapses (Unix ms).
    pub expires_ms: u64,
}

/// Records `agent`'s phone, durably.
pub fn save(store: &dyn Store, agent: &str, phone: &Phone) -> Result<(), StoreError> {
    store.put_json(Tree::Phones, agent, phone)?;
    store.flush()
}

/// Forgets `agent`'s phone, durably.
pub fn remove(store: &dyn Store, agent: &str) -> Result<(), StoreError> {
    store.delete(Tree::Phones, agent.as_bytes())?;
    store.flush()
}

/// Every registered phone that has not lapsed at `now_ms`, by agent (as many as agents).
pub fn live(store: &dyn Store, now_ms: u64) -> Result<Vec<(String, Phone)>, StoreError> {
    store
        .scan_prefix(Tree::Phones, b"")?
        .into_iter()
        .map(|(k, v)| {
            let phone: Phone = crate::store::decode(Tree::Phones, &k, &v)?;
            Ok((String::from_utf8_lossy(&k).into_owned(), phone))
        })
        .filter(|r| r.as_ref().map_or(true, |(_, p)| p.expires_ms > now_ms))
        .collect()
}

/// The secret that signs digest challenges (nonces carry their time and a signature, so any
/// node, before or after a restart, can check one it did not hand out). Made once per store.
pub fn nonce_key(store: &dyn Store) -> Result<Vec<u8>, StoreError> {
    if let Some(key) = store.get(Tree::Meta, NONCE_KEY)? {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    let mut batch = Batch::new();
    batch.expect(Tree::Meta, NONCE_KEY, None);
    batch.put(Tree::Meta, NONCE_KEY, key.to_vec());
    match store.commit(&batch) {
        Ok(()) => {
            store.flush()?;
            Ok(key.to_vec())
        }
        // Another node made it first: use theirs.
        Err(StoreError::Conflict { .. }) => store
            .get(Tree::Meta, NONCE_KEY)?
            .ok_or_else(|| StoreError::Backend("the SIP nonce key vanished".into())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn phones_are_kept_until_they_lapse_and_the_nonce_key_is_made_once() {
        let store = MemoryStore::new();
        let phone = Phone {
            uri: "sip:alice@127.0.0.1:5070".into(),
            transport: "udp".into(),
            addr: "127.0.0.1:5070".into(),
            expires_ms: 2_000,
        };
        save(&store, "alice", &phone).unwrap();
        assert_eq!(live(&store, 1_000).unwrap(), vec![("alice".into(), phone)]);
        assert!(live(&store, 2_000).unwrap().is_empty(), "lapsed");
        remove(&store, "alice").unwrap();
        assert!(live(&store, 0).unwrap().is_empty());
        let key = nonce_key(&store).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(nonce_key(&store).unwrap(), key);
    }
}
