//! Outgoing HTTP for CRM connectors (`wasi:http/outgoing-handler`), through a gate: only the
//! hosts in the connector's allowlist, within what is left of the lookup's time budget, with
//! response bodies capped. An allowed name is resolved here and each address checked: one that
//! is loopback, private, link-local or otherwise internal is refused unless the allowlist
//! names that address itself, and a plain-HTTP request goes to the address checked (never
//! resolved again), so a name that rebinds to an internal address between two lookups gets
//! nowhere (over HTTPS the certificate must still match the name). A refused request fails
//! with `http-request-denied` before any connection is made; flows never get `wasi:http` at
//! all.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What a deployed connector may do, fixed at deploy with the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectorPolicy {
    /// Hosts it may reach: `crm.example.com` (any port), `crm.example.com:8443` (that port
    /// only) or `*.example.com` (any subdomain).
    pub allow: Vec<String>,
    /// The budget of one lookup, in milliseconds: the connector's own run time and every
    /// request it makes. Past it the flow gets a lookup error.
    pub timeout_ms: u64,
    /// Largest response body it may read, in bytes.
    pub max_response_bytes: u64,
}

impl ConnectorPolicy {
    /// Default lookup budget.
    pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
    /// Default response cap: 1 MiB.
    pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;

    /// A policy from deploy options, checked: at least one well-formed host, a timeout of
    /// 1 ms to 60 s and a cap of 1 byte to 64 MiB.
    pub fn new(
        allow: Vec<String>,
        timeout_ms: Option<u64>,
        max_response_bytes: Option<u64>,
    ) -> Result<ConnectorPolicy, String> {
        let allow: Vec<String> = allow
            .iter()
            .flat_map(|a| a.split(','))
            .map(|a| a.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .collect();
        if allow.is_empty() {
            return Err(
                "a CRM connector needs the hosts it may reach: deploy with --allow crm.example.com (API: ?allow=crm.example.com)".into(),
            );
        }
        for entry in &allow {
            check_entry(entry)?;
        }
        let timeout_ms = timeout_ms.unwrap_or(Self::DEFAULT_TIMEOUT_MS);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(format!(
                "the lookup timeout is 1 to 60000 ms, not {timeout_ms}"
            ));
        }
        let max_response_bytes = max_response_bytes.unwrap_or(Self::DEFAULT_MAX_RESPONSE_BYTES);
        if !(1..=64 << 20).contains(&max_response_bytes) {
            return Err(format!(
                "the response cap is 1 byte to 64 MiB, not {max_response_bytes} bytes"
            ));
        }
        Ok(ConnectorPolicy {
            allow,
            timeout_ms,
            max_response_bytes,
        })
    }

    /// Whether `ip`, an address an allowed name resolved to, may be reached on `port`: any
    /// public address; an internal one (loopback, private, link-local, ...) only when the
    /// allowlist names it.
    pub fn reaches(&self, ip: IpAddr, port: u16) -> bool {
        !is_internal(ip) || self.allows(&ip.to_string(), port)
    }

    /// Whether a request to `host` on `port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().any(|entry| {
            let (pattern, wanted_port) = split_port(entry).unwrap_or((entry, None));
            if wanted_port.is_some_and(|p| p != port) {
                return false;
            }
            match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => host == pattern,
            }
        })
    }
}

/// Whether `ip` is an address of this machine or of a private network: what a connector must
/// not reach through a public name.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                // Benchmarking, 198.18.0.0/15.
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // Unique local, fc00::/7; link-local, fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// `host[:port]` into its parts; IPv6 literals are bracketed (`[::1]:8080`). `Err` when the
/// port is not a number from 1 to 65535.
fn split_port(entry: &str) -> Result<(&str, Option<u16>), ()> {
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or(())?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or(())?)),
            }
        }
        None => match entry.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (entry, None),
        },
    };
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or(()))
        .transpose()?;
    Ok((host, port))
}

fn check_entry(entry: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{entry:?} is not an allowed host: {why} (write crm.example.com, crm.example.com:8443 or *.example.com)"
        ))
    };
    if entry.contains("://") || entry.contains('/') {
        return bad("give the host alone, without scheme or path");
    }
    let Ok((host, _)) = split_port(entry) else {
        return bad("the port is not a number from 1 to 65535");
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.contains('*') {
        return bad("a wildcard may only start the name, as in *.example.com");
    }
    if host.starts_with("*.") && !name.contains('.') {
        return bad("a wildcard needs a domain of two labels or more, as in *.example.com");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    {
        return bad("a host name has letters, digits, dots and dashes only");
    }
    Ok(())
}

/// Refused hosts named in one lookup's error, at most.
const MAX_DENIED_LISTED: usize = 4;

/// The gate one connector call's requests pass through.
#[derive(Default)]
pub struct Gate {
    /// The policy and the lookup's deadline; none lets nothing through (flows, deploy checks).
    open: Option<(std::sync::Arc<ConnectorPolicy>, Instant)>,
    /// Requests refused, as `host:port` (and the addresses refused), for the lookup's error
    /// message; shared with the requests' own tasks, which resolve names.
    pub denied: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    /// Notes a refused request for the lookup's error message (a few, once each).
    fn deny(denied: &Mutex<Vec<String>>, refused: String) {
        let mut denied = denied.lock().unwrap_or_else(|p| p.into_inner());
        if denied.len() < MAX_DENIED_LISTED && !denied.contains(&refused) {
            denied.push(refused);
        }
    }

    /// The requests refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.denied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Gate {
    /// A gate for one lookup under `policy`, ending at `deadline`.
    pub fn open(policy: std::sync::Arc<ConnectorPolicy>, deadline: Instant) -> Gate {
        Gate {
            open: Some((policy, deadline)),
            denied: Arc::default(),
        }
    }
}

fn refuse(error: Error) -> SendFuture {
    Box::new(async move { Err(error) })
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Gate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let (Some(host), Some((policy, deadline))) = (uri.host(), self.open.clone()) else {
            return refuse(Error::HttpRequestDenied);
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !policy.allows(host, port) {
            if self.refused().is_empty() {
                tracing::warn!(target: "connector", host, port, "request outside the connector's allowlist refused");
            }
            Gate::deny(&self.denied, format!("{host}:{port}"));
            return refuse(Error::HttpRequestDenied);
        }
        let (name, denied) = (host.to_string(), self.denied.clone());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return refuse(Error::ConnectionTimeout);
        }
        let within = |asked: Option<Duration>| Some(asked.map_or(left, |a| a.min(left)));
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: within(options.connect_timeout),
            first_byte_timeout: within(options.first_byte_timeout),
            between_bytes_timeout: within(options.between_bytes_timeout),
        };
        let cap = policy.max_response_bytes;
        let deadline = tokio::time::Instant::from_std(deadline);
        Box::new(async move {
            use http_body_util::BodyExt;
            let mut request = request;
            let resolved =
                tokio::time::timeout_at(deadline, tokio::net::lookup_host((name.as_str(), port)))
                    .await;
            let addresses: Vec<SocketAddr> = match resolved {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(_)) => {
                    return Err(Error::DnsError {
                        rcode: Some("NXDOMAIN".into()),
                        info_code: None,
                    });
                }
                Err(_) => return Err(Error::ConnectionTimeout),
            };
            let Some(address) = addresses
                .iter()
                .copied()
                .find(|a| policy.reaches(a.ip(), port))
            else {
                let listed: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
                tracing::warn!(target: "connector", host = name, port, addresses = ?listed, "an allowed name resolves to internal addresses only; refused");
                Gate::deny(
                    &denied,
                    format!(
                        "{name}:{port} resolves to {}, which the allowlist does not name",
                        listed.join(", ")
                    ),
                );
                return Err(Error::HttpRequestDenied);
            };
            if !https && address.ip().to_string() != name {
                // Plain HTTP goes to the address checked; the Host header keeps the name.
                let mut parts = request.uri().clone().into_parts();
                parts.authority = address.to_string().parse().ok();
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
            }
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options));
            let (response, io) = match tokio::time::timeout_at(deadline, sent).await {
                Ok(sent) => sent?,
                Err(_) => return Err(Error::HttpResponseTimeout),
            };
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > cap) {
                return Err(Error::HttpResponseBodySize(declared));
            }
            let response = response.map(|body| {
                Capped {
                    inner: body.boxed_unsync(),
                    left: cap,
                    cap,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            });
            Ok((
                response,
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

/// A response body that fails once more than `cap` bytes came through, or at the lookup's
/// deadline (a CRM trickling bytes is cut there too).
struct Capped {
    inner: WasiBody,
    left: u64,
    cap: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.cap)))));
                    }
                    this.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> ConnectorPolicy {
        ConnectorPolicy::new(allow.iter().map(|s| s.to_string()).collect(), None, None).unwrap()
    }

    #[test]
    fn internal_addresses_are_reached_only_when_listed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_internal(ip(public)), "{public}");
        }
        let p = policy(&["crm.example.com", "127.0.0.1:8080", "[::1]"]);
        assert!(p.reaches(ip("93.184.216.34"), 443));
        assert!(
            !p.reaches(ip("10.0.0.7"), 443),
            "a private address the list does not name"
        );
        assert!(p.reaches(ip("127.0.0.1"), 8080));
        assert!(!p.reaches(ip("127.0.0.1"), 9090), "listed for another port");
        assert!(p.reaches(ip("::1"), 1234));
    }

    #[test]
    fn allowlist_matches_hosts_ports_and_subdomains() {
        let p = policy(&[
            "crm.example.com.",
            "127.0.0.1:8080",
            "*.acme.test",
            "[::1]:9000",
        ]);
        assert!(p.allows("crm.example.com", 443));
        assert!(p.allows("CRM.example.com.", 80));
        assert!(!p.allows("evil.example.com", 443));
        assert!(!p.allows("crm.example.com.evil.test", 443));
        assert!(p.allows("127.0.0.1", 8080));
        assert!(!p.allows("127.0.0.1", 8081));
        assert!(p.allows("eu.api.acme.test", 443));
        assert!(!p.allows("acme.test", 443));
        assert!(!p.allows("notacme.test", 443));
        assert!(p.allows("::1", 9000));
        assert!(!p.allows("::1", 9001));
    }

    #[test]
    fn bad_policies_say_what_to_write() {
        let err = |allow: &[&str], t, m| {
            ConnectorPolicy::new(allow.iter().map(|s| s.to_string()).collect(), t, m).unwrap_err()
        };
        assert!(err(&[], None, None).contains("--allow"));
        assert!(err(&["https://crm.example.com"], None, None).contains("without scheme"));
        assert!(err(&["crm.example.com:http"], None, None).contains("port"));
        assert!(err(&["crm.*.com"], None, None).contains("wildcard"));
        assert!(err(&["*.com"], None, None).contains("two labels"));
        assert!(err(&["crm.example.com"], Some(0), None).contains("timeout"));
        assert!(err(&["crm.example.com"], None, Some(0)).contains("cap"));
        let ok =
            ConnectorPolicy::new(vec!["a.test, b.test:81".into()], Some(500), Some(10)).unwrap();
        assert_eq!(ok.allow, vec!["a.test", "b.test:81"]);
    }
}
