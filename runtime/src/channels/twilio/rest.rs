//! Twilio's REST API, as Twilio documents it: `POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic auth (the account SID and
//! auth token) and a form body (`To`, `From`, `Body`), answered `201 Created` with the
//! message's JSON. The base URL is configurable (`twilio.api_url`), so a region's edge or a
//! local stand-in can take the requests.

use std::time::Duration;

use base64::Engine as _;

use crate::config::TwilioConfig;

/// Twilio's own API address, when `twilio.api_url` is not set.
pub const DEFAULT_API_URL: &str = "https://api.twilio.com";

/// How many times a request is sent in all when it could not reach Twilio, Twilio answered
/// 429 (too many requests: not taken), or, for a request that may be repeated (a call's
/// redirect), Twilio failed (5xx).
const ATTEMPTS: u32 = 3;

/// A client of the account's REST API.
pub struct Rest {
    agent: ureq::Agent,
    base: String,
    account_sid: String,
    authorization: String,
}

/// Why a request to Twilio failed, after its retries.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Twilio refused the request (4xx): sending it again would not help.
    #[error("Twilio refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Twilio's explanation (its JSON `message`), or the body.
        message: String,
    },
    /// Twilio failed after the request reached it (5xx, a lost answer): it may or may not have
    /// acted on it, and a message is not sent again (the customer would get it twice).
    #[error(
        "Twilio did not answer clearly ({why}): the message may or may not have gone out; check with the customer before sending it again"
    )]
    InDoubt {
        /// What happened.
        why: String,
    },
    /// Twilio could not be reached, or kept failing (5xx, 429).
    #[error(
        "Twilio's API at {base} did not take the request after {ATTEMPTS} attempts ({last}); nothing was sent: try again, and check twilio.api_url and the network"
    )]
    Unavailable {
        /// The base URL.
        base: String,
        /// The last failure.
        last: String,
    },
}

impl Rest {
    /// A client when the account SID and auth token are both configured.
    pub fn from_config(config: &TwilioConfig) -> Option<Rest> {
        let account_sid = config.account_sid.clone()?;
        let token = config.auth_token.clone()?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{token}"))
        );
        Some(Rest {
            agent,
            base: config
                .api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_API_URL.to_string())
                .trim_end_matches('/')
                .to_string(),
            account_sid,
            authorization,
        })
    }

    /// Sends an SMS from one of the account's numbers; the message's SID once Twilio took it.
    pub fn send_sms(&self, from: &str, to: &str, body: &str) -> Result<String, RestError> {
        let answer = self.post(
            "Messages.json",
            &[("To", to), ("From", from), ("Body", body)],
            false,
        )?;
        Ok(answer["sid"].as_str().unwrap_or_default().to_string())
    }

    /// Places a call from one of the account's numbers (`POST .../Calls.json` with `To`,
    /// `From`, `Url` for its TwiML once answered, `StatusCallback` for how it ended, and
    /// `Timeout` to ring); the call's SID. Never sent again after a server error: that could
    /// ring the phone twice.
    pub fn create_call(
        &self,
        to: &str,
        from: &str,
        url: &str,
        status_callback: &str,
        timeout_secs: u64,
    ) -> Result<String, RestError> {
        let timeout = timeout_secs.to_string();
        let answer = self.post(
            "Calls.json",
            &[
                ("To", to),
                ("From", from),
                ("Url", url),
                ("Method", "POST"),
                ("StatusCallback", status_callback),
                ("StatusCallbackMethod", "POST"),
                ("Timeout", timeout.as_str()),
            ],
            false,
        )?;
        Ok(answer["sid"].as_str().unwrap_or_default().to_string())
    }

    /// Gives a live call new TwiML at once (`POST .../Calls/{CallSid}.json` with `Twiml`): a
    /// caller waiting in `<Enqueue>` leaves the queue and runs it.
    pub fn redirect_call(&self, call_sid: &str, twiml: &str) -> Result<(), RestError> {
        // Giving a call the same TwiML twice does no harm: sent again on a 5xx.
        self.post(&format!("Calls/{call_sid}.json"), &[("Twiml", twiml)], true)?;
        Ok(())
    }

    /// POSTs a form to `/2010-04-01/Accounts/{AccountSid}/{resource}`: its JSON answer, after
    /// up to [`ATTEMPTS`] tries of a request Twilio did not take; `repeatable` requests are
    /// also sent again after a server error.
    fn post(
        &self,
        resource: &str,
        form: &[(&str, &str)],
        repeatable: bool,
    ) -> Result<serde_json::Value, RestError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.base, self.account_sid
        );
        let form = serde_urlencoded::to_string(form).unwrap_or_default();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                std::thread::sleep(Duration::from_millis(250 << (attempt - 2)));
            }
            let sent = self
                .agent
                .post(&url)
                .header("Authorization", &self.authorization)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(form.as_str());
            let mut response = match sent {
                Ok(response) => response,
                // Never reached Twilio: safe to send again.
                Err(e @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)) => {
                    last = e.to_string();
                    continue;
                }
                Err(e) if repeatable => {
                    last = e.to_string();
                    continue;
                }
                Err(e) => return Err(RestError::InDoubt { why: e.to_string() }),
            };
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match status {
                200..=299 => return Ok(json),
                429 => last = format!("HTTP {status}"),
                500..=599 if repeatable => last = format!("HTTP {status}"),
                500..=599 => {
                    return Err(RestError::InDoubt {
                        why: format!("HTTP {status}"),
                    });
                }
                _ => {
                    return Err(RestError::Refused {
                        status,
                        message: json["message"].as_str().map_or(text, str::to_string),
                    });
                }
            }
            tracing::warn!(
                attempt,
                status,
                resource,
                "Twilio's API failed; sending again"
            );
        }
        Err(RestError::Unavailable {
            base: self.base.clone(),
            last,
        })
    }
}
