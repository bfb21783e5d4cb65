//! The one configuration of a Switchboard server: `switchboard.toml` (every key optional),
//! then `SWITCHBOARD_*` environment variables over it, then command-line flags over both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Everything a server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store, compiled artifacts and components live.
    pub data_dir: PathBuf,
    /// Where the truth lives: the embedded store in `data_dir` (the default), or a shared
    /// PostgreSQL database.
    pub store: StoreConfig,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// On SIGTERM, how long calls up may go on before the node stops.
    pub drain_secs: u64,
    /// Limits every flow step runs under.
    pub engine: EngineConfig,
    /// What a contact gets when its flow faults.
    pub fallback: FallbackConfig,
    /// When a canary is rolled back by itself.
    pub canary: CanaryConfig,
    /// Twilio-compatible voice and SMS webhooks.
    pub twilio: TwilioConfig,
    /// Voice over SIP.
    pub sip: SipConfig,
    /// Limits of the HTTP API.
    pub api: ApiConfig,
    /// The e-mail channel: the SMTP receiver, the inbound webhook and the relay mail goes
    /// out through.
    pub email: EmailConfig,
}

/// The e-mail channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Where the SMTP receiver listens (such as `0.0.0.0:25`); none: no receiver.
    pub listen: Option<SocketAddr>,
    /// The name this server gives itself: in its SMTP greeting and in the Message-IDs of the
    /// mail it sends.
    pub domain: String,
    /// A certificate chain (PEM) and its key: the receiver then offers STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The largest message accepted, in bytes (larger: 552).
    pub max_message_bytes: usize,
    /// The largest attachment kept with the contact, in bytes; larger ones are named to the
    /// flow and the agent but not kept.
    pub max_attachment_bytes: usize,
    /// The relay mail goes out through: `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://host:465` (TLS) or `smtp://host:25` (plain), with `user:password@` for AUTH.
    /// None: replies wait in the outbox.
    pub relay: Option<String>,
    /// The secret a provider's inbound-parse webhook (`POST /email/inbound`) must present, as
    /// the password of HTTP basic authentication or a bearer token. None: the webhook is off.
    pub inbound_secret: Option<String>,
    /// At most this many automatic replies to one sender per hour (so two robots cannot loop).
    pub auto_replies_per_hour: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            listen: None,
            domain: "switchboard.localhost".into(),
            tls_cert: None,
            tls_key: None,
            max_message_bytes: 10 * 1024 * 1024,
            max_attachment_bytes: 5 * 1024 * 1024,
            relay: None,
            inbound_secret: None,
            auto_replies_per_hour: 5,
        }
    }
}

/// Limits of the HTTP API.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Requests a second one person (their tokens and sessions together) or agent may make
    /// to `/v1` and `/agent/v1` (twice that in a burst); more get 429 with `Retry-After`.
    /// 0: no limit.
    pub requests_per_second: u32,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (401 otherwise).
    pub metrics_token: Option<String>,
}

/// The store: unset `url` keeps the embedded store in the data directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL database, as `postgres://USER:PASSWORD@HOST:5432/DATABASE` (or
    /// `host=... dbname=...`), shared by every node of a cluster.
    pub url: Option<String>,
    /// Accept a database that does not sync what it acknowledges (`fsync` or
    /// `synchronous_commit` off): a crash may lose acknowledged steps.
    pub unsafe_durability: bool,
}

/// The SIP endpoint (voice): off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP address for SIP, such as `0.0.0.0:5060`. Unset: no SIP.
    pub listen: Option<SocketAddr>,
    /// The address put in Via, Contact and SDP when `listen` is a wildcard (the address
    /// trunks and phones reach this host on).
    pub public_ip: Option<std::net::IpAddr>,
    /// RTP ports, inclusive (two per call: one per leg when bridged).
    pub rtp_ports: (u16, u16),
    /// Ring this long before answering (0: answer as soon as the flow's first step ran).
    pub ring_ms: u64,
    /// How long an agent's phone may ring before the call goes back to the flow.
    pub agent_ring_secs: u64,
    /// Where `transfer` to a plain number goes (`host:port` of a trunk or PBX).
    pub trunk: Option<String>,
    /// Who may start a call: addresses or networks (`203.0.113.7`, `10.0.0.0/8`,
    /// `2001:db8::/32`) of the trunks and PBXs in front. An INVITE from anywhere else gets
    /// 403 and starts nothing. Empty: anyone who reaches the port.
    pub trusted: Vec<String>,
    /// With `trusted` empty, new calls a second one address may start (twice that in a
    /// burst); more get 503 with `Retry-After`, so a flood from one source leaves room for
    /// every other caller. Listed trunks are not limited. 0: no limit.
    pub invites_per_second: u32,
    /// When both are set, every new call must carry digest credentials with this user and
    /// password (RFC 3261 §22): an INVITE without them gets 401 and a challenge, one with
    /// wrong ones 403.
    pub inbound_username: Option<String>,
    /// The password of `inbound_username`.
    pub inbound_password: Option<String>,
    /// Credentials Switchboard answers the trunk's digest challenge with (401 or 407 to an
    /// INVITE sent through `trunk`); other hosts' challenges are not answered.
    pub trunk_username: Option<String>,
    /// The password of `trunk_username`.
    pub trunk_password: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: None,
            public_ip: None,
            rtp_ports: (20000, 39999),
            ring_ms: 0,
            agent_ring_secs: 30,
            trunk: None,
            trusted: Vec::new(),
            invites_per_second: 20,
            inbound_username: None,
            inbound_password: None,
            trunk_username: None,
            trunk_password: None,
        }
    }
}

/// The Twilio-compatible webhooks.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account's auth token: when set, every webhook must carry a valid
    /// `X-Twilio-Signature` (403 otherwise).
    pub auth_token: Option<String>,
    /// The public base URL Twilio calls (such as `https://cc.example.com`), as signed by Twilio
    /// and used in TwiML action URLs; behind a TLS-terminating proxy it differs from what the
    /// server sees. Default: `http://` + the request's Host header.
    pub public_url: Option<String>,
    /// An SMS conversation is one contact while messages keep coming within this many
    /// minutes.
    pub sms_idle_minutes: Option<u64>,
    /// The account SID (`AC...`): with the auth token, Switchboard sends SMS through Twilio's
    /// REST API (an agent's replies, what a flow says outside a webhook's answer).
    pub account_sid: Option<String>,
    /// The REST API's base URL. Default: `https://api.twilio.com`.
    pub api_url: Option<String>,
}

/// Automatic rollback of canaries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryConfig {
    /// A canary whose share of faulted steps exceeds this (0.0-1.0) is aborted...
    pub max_fault_rate: f64,
    /// ...once it has run at least this many steps.
    pub min_steps: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            max_fault_rate: 0.05,
            min_steps: 20,
        }
    }
}

/// The sandbox of every flow step.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Wall-clock budget of one step, in milliseconds.
    pub step_deadline_ms: u64,
    /// Linear memory cap of one flow instance, in MiB.
    pub memory_cap_mib: u64,
    /// Optional instruction budget per step (Wasm fuel). Off by default: it costs ~10%.
    pub fuel: Option<u64>,
    /// How many steps may run at once (instances in the pool).
    pub max_concurrent_steps: u32,
    /// Largest flow state a step may return, in bytes.
    pub max_state_bytes: usize,
    /// Most actions a step may return.
    pub max_actions: usize,
}

/// The fallback: apologise and hand the contact to a human.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// What the customer is told.
    pub message: String,
    /// The queue the contact is sent to.
    pub queue: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".switchboard"),
            store: StoreConfig::default(),
            listen: "127.0.0.1:8080".parse().expect("a literal address"),
            drain_secs: 30,
            engine: EngineConfig::default(),
            fallback: FallbackConfig::default(),
            canary: CanaryConfig::default(),
            twilio: TwilioConfig::default(),
            sip: SipConfig::default(),
            api: ApiConfig::default(),
            email: EmailConfig::default(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            step_deadline_ms: 50,
            memory_cap_mib: 64,
            fuel: None,
            max_concurrent_steps: 64,
            max_state_bytes: 64 * 1024,
            max_actions: 64,
        }
    }
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            message: "We're sorry, something went wrong on our side. Please hold while we connect you with an agent.".into(),
            queue: "default".into(),
        }
    }
}

impl Config {
    /// Reads `path` if given (it must exist), else `./switchboard.toml` if present, else the
    /// defaults; then applies `SWITCHBOARD_DATA_DIR`, `SWITCHBOARD_STORE`, `SWITCHBOARD_LISTEN`,
    /// `SWITCHBOARD_STEP_DEADLINE_MS` and `SWITCHBOARD_MEMORY_CAP_MIB`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None if Path::new("switchboard.toml").exists() => {
                Self::from_file(Path::new("switchboard.toml"))?
            }
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid Switchboard configuration (see README, section Configuration)",
                path.display()
            )
        })
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(dir) = var("SWITCHBOARD_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(url) = var("SWITCHBOARD_STORE") {
            self.store.url = Some(url);
        }
        if let Some(listen) = var("SWITCHBOARD_LISTEN") {
            self.listen = listen.parse().with_context(|| {
                format!("SWITCHBOARD_LISTEN={listen} is not an address such as 127.0.0.1:8080")
            })?;
        }
        if let Some(ms) = var("SWITCHBOARD_STEP_DEADLINE_MS") {
            self.engine.step_deadline_ms = ms.parse().with_context(|| {
                format!("SWITCHBOARD_STEP_DEADLINE_MS={ms} is not a number of milliseconds")
            })?;
        }
        if let Some(sid) = var("SWITCHBOARD_TWILIO_ACCOUNT_SID") {
            self.twilio.account_sid = Some(sid);
        }
        if let Some(url) = var("SWITCHBOARD_TWILIO_API_URL") {
            self.twilio.api_url = Some(url);
        }
        if let Some(token) = var("SWITCHBOARD_TWILIO_AUTH_TOKEN") {
            self.twilio.auth_token = Some(token);
        }
        if let Some(url) = var("SWITCHBOARD_PUBLIC_URL") {
            self.twilio.public_url = Some(url);
        }
        if let Some(listen) = var("SWITCHBOARD_SIP_LISTEN") {
            self.sip.listen = Some(listen.parse().with_context(|| {
                format!("SWITCHBOARD_SIP_LISTEN={listen} is not an address such as 0.0.0.0:5060")
            })?);
        }
        if let Some(trunk) = var("SWITCHBOARD_SIP_TRUNK") {
            self.sip.trunk = Some(trunk);
        }
        if let Some(user) = var("SWITCHBOARD_SIP_TRUNK_USERNAME") {
            self.sip.trunk_username = Some(user).filter(|u| !u.is_empty());
        }
        if let Some(password) = var("SWITCHBOARD_SIP_TRUNK_PASSWORD") {
            self.sip.trunk_password = Some(password).filter(|p| !p.is_empty());
        }
        if let Some(n) = var("SWITCHBOARD_API_REQUESTS_PER_SECOND") {
            self.api.requests_per_second = n.parse().with_context(|| {
                format!(
                    "SWITCHBOARD_API_REQUESTS_PER_SECOND={n} is not a whole number (0: no limit)"
                )
            })?;
        }
        if let Some(token) = var("SWITCHBOARD_METRICS_TOKEN") {
            self.api.metrics_token = Some(token).filter(|t| !t.is_empty());
        }
        if let Some(user) = var("SWITCHBOARD_SIP_INBOUND_USERNAME") {
            self.sip.inbound_username = Some(user).filter(|u| !u.is_empty());
        }
        if let Some(password) = var("SWITCHBOARD_SIP_INBOUND_PASSWORD") {
            self.sip.inbound_password = Some(password).filter(|p| !p.is_empty());
        }
        if let Some(trusted) = var("SWITCHBOARD_SIP_TRUSTED") {
            self.sip.trusted = trusted
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(n) = var("SWITCHBOARD_SIP_INVITES_PER_SECOND") {
            self.sip.invites_per_second = n.parse().with_context(|| {
                format!(
                    "SWITCHBOARD_SIP_INVITES_PER_SECOND={n} is not a whole number (0: no limit)"
                )
            })?;
        }
        if let Some(ms) = var("SWITCHBOARD_SIP_RING_MS") {
            self.sip.ring_ms = ms.parse().with_context(|| {
                format!("SWITCHBOARD_SIP_RING_MS={ms} is not a number of milliseconds")
            })?;
        }
        if let Some(listen) = var("SWITCHBOARD_SMTP_LISTEN") {
            self.email.listen = Some(listen.parse().with_context(|| {
                format!("SWITCHBOARD_SMTP_LISTEN={listen} is not an address such as 0.0.0.0:2525")
            })?);
        }
        if let Some(relay) = var("SWITCHBOARD_EMAIL_RELAY") {
            self.email.relay = Some(relay);
        }
        if let Some(secret) = var("SWITCHBOARD_EMAIL_INBOUND_SECRET") {
            self.email.inbound_secret = Some(secret);
        }
        if let Some(mib) = var("SWITCHBOARD_MEMORY_CAP_MIB") {
            self.engine.memory_cap_mib = mib.parse().with_context(|| {
                format!("SWITCHBOARD_MEMORY_CAP_MIB={mib} is not a number of MiB")
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut config: Config =
            toml::from_str("listen = \"127.0.0.1:9000\"\n[engine]\nstep_deadline_ms = 20\n")
                .unwrap();
        assert_eq!(config.engine.step_deadline_ms, 20);
        assert_eq!(config.engine.memory_cap_mib, 64);
        config
            .apply_env(|k| (k == "SWITCHBOARD_LISTEN").then(|| "127.0.0.1:9100".to_string()))
            .unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert!(
            config
                .apply_env(|k| (k == "SWITCHBOARD_LISTEN").then(|| "nowhere".into()))
                .is_err()
        );
        assert!(
            toml::from_str::<Config>("lisen = 1").is_err(),
            "typos are reported, not ignored"
        );
    }
}
