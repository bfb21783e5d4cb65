//! The admin commands' HTTP client: one agent, the bearer token, JSON errors turned into
//! messages that say what to do.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde_json::Value;

use super::Remote;
use crate::channels::terminal::Driver;
use crate::contract::Event;
use crate::sessions::{NewContact, StepReport};

/// A client of one server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

/// Percent-encodes one path segment or query value. `+` is encoded too: in a query it would
/// read as a space, and in a path `%2B` decodes to the same `+`.
pub fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Client {
    /// A client for `remote`, with its token or the one saved in the data directory.
    pub fn new(remote: &Remote) -> anyhow::Result<Client> {
        let token = match &remote.token {
            Some(token) => token.clone(),
            None => {
                let path = remote.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_string())
                    .map_err(|_| anyhow!(
                        "no API token: pass --token or set SWITCHBOARD_TOKEN to the token the server printed on its first start (it was also saved in {})",
                        path.display()
                    ))?
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            agent,
            base: remote.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response = result.map_err(|e| match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => anyhow!(
                "cannot reach the Switchboard server at {}: is `switchboard serve` running? (pass --server or set SWITCHBOARD_URL for another address; {e})",
                self.base
            ),
            other => anyhow!("request to {} failed: {other}", self.base),
        })?;
        let status = response.status();
        let body: Value = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_json()
            .unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        // Replay diffs that explain a refusal are shown in full.
        let diffs: String = serde_json::from_value::<Vec<crate::replay::ReplayReport>>(
            body["error"]["details"].clone(),
        )
        .map(|reports| reports.iter().map(crate::replay::render).collect())
        .unwrap_or_default();
        Err(anyhow!(
            "the server refused ({} {code}): {message}\n{diffs}",
            status.as_u16()
        ))
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .call(),
        )
    }

    /// POST JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .send_json(body),
        )
    }

    /// PUT JSON.
    pub fn put_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .send_json(body),
        )
    }

    /// PATCH JSON.
    pub fn patch_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .patch(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .send_json(body),
        )
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .call(),
        )
    }

    /// POST text.
    pub fn post_text(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .header("Content-Type", "text/plain; charset=utf-8")
                .send(body),
        )
    }

    /// Uploads a component as the next version of `flow`.
    pub fn deploy(&self, flow: &str, bytes: Vec<u8>, query: &str) -> anyhow::Result<Value> {
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.answer(
            self.agent
                .post(format!(
                    "{}/v1/flows/{}/versions{query}",
                    self.base,
                    encode_path(flow)
                ))
                .header("Authorization", self.auth())
                .header("Content-Type", "application/wasm")
                .send(&bytes[..]),
        )
    }
}

impl Driver for Client {
    fn start(&mut self, new: NewContact) -> anyhow::Result<StepReport> {
        let body = serde_json::json!({
            "channel": new.channel, "from": new.from, "to": new.to, "flow": new.flow, "attributes": new.attributes,
        });
        let report = self.post_json("/v1/contacts", &body)?;
        serde_json::from_value(report).context("the server's step report does not decode")
    }

    fn send(&mut self, contact: &str, event: Event) -> anyhow::Result<StepReport> {
        let report = self.post_json(
            &format!("/v1/contacts/{contact}/events"),
            &serde_json::to_value(&event)?,
        )?;
        serde_json::from_value(report).context("the server's step report does not decode")
    }

    fn describe(&self, report: &StepReport) -> String {
        format!(
            "flow {} version {} on {}",
            report.flow, report.version, self.base
        )
    }
}
