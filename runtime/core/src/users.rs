//! People: named users, each with one role, who sign in to the browser with a password or
//! present one of their own API tokens. Passwords are kept only as argon2id hashes (a
//! memory-hard hash, so a stolen store does not give them away); tokens and browser sessions
//! only as SHA-256 hashes of 256 random bits.
//!
//! Everything lives in the `Tokens` tree: `user/NAME` (a user), `hash/SHA` (an API token),
//! `session/SHA` (a browser session).

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, StoreExt, Tree};
use crate::tokens;

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, people and tokens included.
    Admin,
    /// Queues, agents, tasks, the workflow, statistics and reports; reads flows and contacts.
    Supervisor,
    /// Flows: deploy, canary, rollback, settings, replay; entry points, prompts, contacts.
    Developer,
    /// Their own desk only (`/agent/v1`, as the agent of the same name).
    Agent,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Supervisor, Role::Developer, Role::Agent];

    /// Its name: `admin`, `supervisor`, `developer`, `agent`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Developer => "developer",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Role, UserError> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                UserError::Invalid(format!(
                    "unknown role {s:?}: one of admin, supervisor, developer, agent"
                ))
            })
    }
}

/// Who made a request: the person (for the audit trail) and their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name (or, for a token made before users existed, the token's name).
    pub person: String,
    /// Their role.
    pub role: Role,
}

/// A user as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Unique name: lowercase letters, digits, `.`, `_`, `-`. An agent's user has the name of
    /// the agent whose desk it works.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// A disabled user cannot sign in and their tokens are refused.
    #[serde(default)]
    pub disabled: bool,
    /// argon2id hash of the password (PHC string); none: no browser sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A user as shown: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UserView {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether they are disabled.
    pub disabled: bool,
    /// Whether they can sign in to the browser.
    pub has_password: bool,
    /// RFC 3339 creation time.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            name: u.name.clone(),
            role: u.role,
            disabled: u.disabled,
            has_password: u.password.is_some(),
            created_at: u.created_at.clone(),
        }
    }
}

/// Why a change to users or tokens was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No such user.
    #[error("there is no user {0:?}: `switchboard users list` shows them")]
    UnknownUser(String),
    /// No such token.
    #[error("there is no token {0:?}: `switchboard tokens list` shows them")]
    UnknownToken(String),
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// The change would leave nobody able to administer.
    #[error("{0}")]
    LastAdmin(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a sign-in or a presented credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown user or token, or a wrong password (never told apart, so names cannot be
    /// probed).
    #[error("wrong name or password")]
    Wrong,
    /// The user is disabled.
    #[error("user {0} is disabled: an admin can enable them (`switchboard users enable {0}`)")]
    Disabled(String),
    /// The token's time is over.
    #[error("this token expired at {0}: create a new one (`switchboard tokens create`)")]
    Expired(String),
}

const USER: &str = "user/";
const SESSION: &str = "session/";
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

fn user_key(name: &str) -> String {
    format!("{USER}{name}")
}

fn check_name(name: &str) -> Result<(), UserError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if fine {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "invalid user name {name:?}: 1 to 64 lowercase letters, digits, '.', '_' or '-'"
        )))
    }
}

/// The argon2id hash of `password` (PHC string), after checking its length.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::Invalid(format!(
            "the password is too short: {MIN_PASSWORD} characters at least"
        )));
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| UserError::Invalid(format!("cannot salt the password: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Invalid(format!("cannot hash the password: {e}")))
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The user `name`, if there is one.
pub fn get(store: &dyn Store, name: &str) -> Result<Option<User>, StoreError> {
    store.get_json(Tree::Tokens, &user_key(name))
}

/// Every user, by name.
pub fn list(store: &dyn Store) -> Result<Vec<UserView>, StoreError> {
    let users: Vec<User> = store.scan_json(Tree::Tokens, USER)?;
    Ok(users.iter().map(UserView::from).collect())
}

/// Creates a user; `password` lets them sign in to the browser.
pub fn create(
    store: &dyn Store,
    name: &str,
    role: Role,
    password: Option<&str>,
) -> Result<UserView, UserError> {
    check_name(name)?;
    if get(store, name)?.is_some() {
        return Err(UserError::Exists(name.into()));
    }
    let user = User {
        name: name.to_string(),
        role,
        disabled: false,
        password: password.map(hash_password).transpose()?,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    store.put_json(Tree::Tokens, &user_key(name), &user)?;
    store.flush()?;
    Ok(UserView::from(&user))
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new role.
    pub role: Option<Role>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// A new password.
    pub password: Option<String>,
}

/// Changes a user. Disabling or demoting the last enabled admin is refused. Disabling ends
/// the user's browser sessions.
pub fn change(store: &dyn Store, name: &str, change: &UserChange) -> Result<UserView, UserError> {
    let mut user = get(store, name)?.ok_or_else(|| UserError::UnknownUser(name.into()))?;
    let was_admin = user.role == Role::Admin && !user.disabled;
    if let Some(role) = change.role {
        user.role = role;
    }
    if let Some(disabled) = change.disabled {
        user.disabled = disabled;
    }
    if let Some(password) = &change.password {
        user.password = Some(hash_password(password)?);
    }
    if was_admin && (user.role != Role::Admin || user.disabled) {
        last_admin_guard(store, name, "demote or disable")?;
    }
    store.put_json(Tree::Tokens, &user_key(name), &user)?;
    if user.disabled || change.password.is_some() {
        end_sessions(store, name)?;
    }
    store.flush()?;
    Ok(UserView::from(&user))
}

fn last_admin_guard(store: &dyn Store, name: &str, what: &str) -> Result<(), UserError> {
    let others = list(store)?
        .into_iter()
        .any(|u| u.name != name && u.role == Role::Admin && !u.disabled);
    if others {
        Ok(())
    } else {
        Err(UserError::LastAdmin(format!(
            "{name} is the last enabled admin: make another user admin before you {what} them"
        )))
    }
}

/// Deletes a user with their tokens and sessions.
pub fn delete(store: &dyn Store, name: &str) -> Result<(), UserError> {
    let user = get(store, name)?.ok_or_else(|| UserError::UnknownUser(name.into()))?;
    if user.role == Role::Admin && !user.disabled {
        last_admin_guard(store, name, "delete")?;
    }
    for token in tokens::of_user(store, name)? {
        tokens::revoke(store, &token.id)?;
    }
    end_sessions(store, name)?;
    store.delete(Tree::Tokens, user_key(name).as_bytes())?;
    store.flush()?;
    Ok(())
}

/// The person a user is, if they may act now.
fn principal_of(store: &dyn Store, name: &str) -> Result<Result<Principal, Refusal>, StoreError> {
    Ok(match get(store, name)? {
        None => Err(Refusal::Wrong),
        Some(u) if u.disabled => Err(Refusal::Disabled(u.name)),
        Some(u) => Ok(Principal {
            person: u.name,
            role: u.role,
        }),
    })
}

/// Checks a name and password.
pub fn sign_in(
    store: &dyn Store,
    name: &str,
    password: &str,
) -> Result<Result<Principal, Refusal>, StoreError> {
    let Some(user) = get(store, name)? else {
        // The same work as a real check, so a missing user does not answer faster.
        let _ = password_matches(dummy_hash(), password);
        return Ok(Err(Refusal::Wrong));
    };
    let matches = user
        .password
        .as_deref()
        .is_some_and(|hash| password_matches(hash, password));
    if !matches {
        return Ok(Err(Refusal::Wrong));
    }
    principal_of(store, name)
}

/// argon2id of a password nobody has, checked when a name is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("nobody has this password").unwrap_or_default())
}

/// Who presents the API token `presented`, if they may act now.
pub fn by_token(
    store: &dyn Store,
    presented: &str,
) -> Result<Result<Principal, Refusal>, StoreError> {
    Ok(by_token_until(store, presented)?.map(|(who, _)| who))
}

/// Who presents a token, and until when it holds (`None`: it never runs out).
pub type Holder = (Principal, Option<chrono::DateTime<chrono::Utc>>);

/// The same, with when the token runs out.
pub fn by_token_until(
    store: &dyn Store,
    presented: &str,
) -> Result<Result<Holder, Refusal>, StoreError> {
    let Some(record) = tokens::find(store, presented)? else {
        return Ok(Err(Refusal::Wrong));
    };
    let until = record
        .expires_at
        .as_deref()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&chrono::Utc));
    if let (Some(expires), Some(at)) = (&record.expires_at, until)
        && at <= chrono::Utc::now()
    {
        return Ok(Err(Refusal::Expired(expires.clone())));
    }
    let who = match &record.user {
        Some(user) => principal_of(store, user)?,
        // Made before users existed: the first start's admin token.
        None => Ok(Principal {
            person: record.name.clone(),
            role: Role::Admin,
        }),
    };
    Ok(who.map(|who| (who, until)))
}

/// A browser session as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
struct Session {
    user: String,
    /// The CSRF token the session's changes must carry (`X-CSRF-Token`).
    csrf: String,
    /// Unix ms after which it is over.
    expires_ms: u64,
}

/// A new browser session of `user`: the cookie's value and the session's CSRF token.
pub fn open_session(
    store: &dyn Store,
    user: &str,
    lasts_ms: u64,
) -> Result<(String, String), StoreError> {
    let secret = random_secret("sbs_");
    let csrf = random_secret("");
    let session = Session {
        user: user.to_string(),
        csrf: csrf.clone(),
        expires_ms: now_ms() + lasts_ms,
    };
    store.put_json(Tree::Tokens, &session_key(&secret), &session)?;
    store.flush()?;
    Ok((secret, csrf))
}

/// A browser session found by its cookie.
#[derive(Debug)]
pub struct SessionFound {
    /// Who it is, if they may act now.
    pub who: Result<Principal, Refusal>,
    /// The CSRF token its changes must carry.
    pub csrf: String,
}

/// The browser session `cookie`, while it lasts.
pub fn by_session(store: &dyn Store, cookie: &str) -> Result<Option<SessionFound>, StoreError> {
    let Some(session) = store.get_json::<Session>(Tree::Tokens, &session_key(cookie))? else {
        return Ok(None);
    };
    if session.expires_ms <= now_ms() {
        store.delete(Tree::Tokens, session_key(cookie).as_bytes())?;
        return Ok(None);
    }
    Ok(Some(SessionFound {
        who: principal_of(store, &session.user)?,
        csrf: session.csrf,
    }))
}

/// Ends one browser session (signing out).
pub fn close_session(store: &dyn Store, cookie: &str) -> Result<(), StoreError> {
    store.delete(Tree::Tokens, session_key(cookie).as_bytes())?;
    store.flush()
}

fn end_sessions(store: &dyn Store, user: &str) -> Result<(), StoreError> {
    for (key, value) in store.scan_prefix(Tree::Tokens, SESSION.as_bytes())? {
        let Ok(session) = serde_json::from_slice::<Session>(&value) else {
            continue;
        };
        if session.user == user {
            store.delete(Tree::Tokens, &key)?;
        }
    }
    Ok(())
}

fn session_key(secret: &str) -> String {
    format!("{SESSION}{}", tokens::hash(secret))
}

fn random_secret(prefix: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{prefix}{}", hex::encode(secret))
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> crate::store::MemoryStore {
        crate::store::MemoryStore::default()
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let store = store();
        create(
            &store,
            "sam",
            Role::Supervisor,
            Some("correct horse battery"),
        )
        .unwrap();
        let raw = store.scan_prefix(Tree::Tokens, b"user/").unwrap();
        let text = String::from_utf8_lossy(&raw[0].1);
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        let who = sign_in(&store, "sam", "correct horse battery")
            .unwrap()
            .unwrap();
        assert_eq!(who.role, Role::Supervisor);
        assert_eq!(
            sign_in(&store, "sam", "wrong horse battery").unwrap(),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            sign_in(&store, "nobody", "whatever12345").unwrap(),
            Err(Refusal::Wrong)
        );
        assert!(matches!(
            create(&store, "short", Role::Agent, Some("abc")),
            Err(UserError::Invalid(_))
        ));
        assert!(matches!(
            create(&store, "Bad Name", Role::Agent, None),
            Err(UserError::Invalid(_))
        ));
    }

    #[test]
    fn disabled_users_expired_and_revoked_tokens_are_refused() {
        let store = store();
        create(&store, "root", Role::Admin, None).unwrap();
        create(&store, "dev", Role::Developer, None).unwrap();
        let (id, token) = tokens::create_for(&store, "dev", "laptop", None).unwrap();
        assert_eq!(by_token(&store, &token).unwrap().unwrap().person, "dev");
        change(
            &store,
            "dev",
            &UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
        )
        .unwrap();
        assert_eq!(
            by_token(&store, &token).unwrap(),
            Err(Refusal::Disabled("dev".into()))
        );
        change(
            &store,
            "dev",
            &UserChange {
                disabled: Some(false),
                ..UserChange::default()
            },
        )
        .unwrap();
        tokens::revoke(&store, &id).unwrap();
        assert_eq!(by_token(&store, &token).unwrap(), Err(Refusal::Wrong));
        let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
        let (_, old) = tokens::create_for(&store, "dev", "old", Some(past.clone())).unwrap();
        assert_eq!(by_token(&store, &old).unwrap(), Err(Refusal::Expired(past)));
        // The last admin cannot be disabled, demoted or deleted.
        assert!(matches!(
            delete(&store, "root"),
            Err(UserError::LastAdmin(_))
        ));
        delete(&store, "dev").unwrap();
        assert!(tokens::of_user(&store, "dev").unwrap().is_empty());
    }

    #[test]
    fn sessions_end_when_their_user_is_disabled() {
        let store = store();
        create(&store, "ann", Role::Agent, Some("a long password")).unwrap();
        let (cookie, csrf) = open_session(&store, "ann", 60_000).unwrap();
        let found = by_session(&store, &cookie).unwrap().unwrap();
        assert_eq!(
            (found.who.unwrap().person, found.csrf),
            ("ann".to_string(), csrf)
        );
        change(
            &store,
            "ann",
            &UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
        )
        .unwrap();
        assert!(by_session(&store, &cookie).unwrap().is_none());
        let (expired, _) = open_session(&store, "ann", 0).unwrap();
        assert!(by_session(&store, &expired).unwrap().is_none());
    }
}
