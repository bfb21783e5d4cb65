//! The SMTP receiver (RFC 5321, with SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES and
//! STARTTLS when a certificate is configured): mail for bound addresses is written durably
//! before the 250; unknown recipients get 550, oversized mail 552, a store that cannot write
//! 451 (the sender tries again).
//!
//! Written here rather than taken from a crate: the maintained SMTP server crates either run
//! their own thread pool beside Tokio or leave out the hook this needs (answer 250 only after
//! the message is stored), and the server side of the protocol is a small state machine.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::MailError;
use crate::runtime::Runtime;
use switchboard_mail::path_of;

/// The longest command line read (RFC 5321 allows 512; some clients send longer).
const MAX_COMMAND: usize = 4096;
/// The most recipients of one message.
const MAX_RECIPIENTS: usize = 100;
/// How long a client may stay silent.
const IDLE: Duration = Duration::from_secs(300);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 200;
/// Bad commands before the connection is closed.
const MAX_ERRORS: u32 = 20;

/// Loads the certificate and key STARTTLS offers, when both are configured.
pub fn tls_acceptor(
    config: &crate::config::EmailConfig,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use anyhow::Context as _;
    use rustls_pki_types::pem::PemObject as _;
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        if config.tls_cert.is_some() || config.tls_key.is_some() {
            anyhow::bail!(
                "STARTTLS needs both email.tls_cert and email.tls_key (PEM files); only one is set"
            );
        }
        return Ok(None);
    };
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {} (PEM)", cert.display()))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {} (PEM)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key in email.tls_cert/email.tls_key do not go together")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

/// Serves SMTP on `listener` until the runtime goes away.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "the SMTP receiver cannot accept a connection now");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let rt = rt.clone();
        let tls = tls.clone();
        let permit = permits.clone().try_acquire_owned();
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let Ok(_permit) = permit else {
                let _ = reply(
                    &mut stream,
                    "421 4.3.2 too many connections; try again later",
                )
                .await;
                return;
            };
            if *rt.draining.borrow() {
                let _ = reply(
                    &mut stream,
                    "421 4.3.2 this server is shutting down; try another or later",
                )
                .await;
                return;
            }
            let greeting = format!("220 {} ESMTP Switchboard", rt.email.config().domain);
            if reply(&mut stream, &greeting).await.is_err() {
                return;
            }
            let upgrade = session(&rt, &mut stream, tls.is_some(), peer).await;
            if let (Ended::StartTls, Some(tls)) = (upgrade, tls) {
                // Whatever the client sent after STARTTLS before the handshake is dropped
                // (RFC 3207, section 5: it could be an injected command).
                let stream = stream.into_inner();
                match tokio::time::timeout(IDLE, tls.accept(stream))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                {
                    Ok(secure) => {
                        let mut secure = BufReader::new(secure);
                        session(&rt, &mut secure, false, peer).await;
                    }
                    Err(e) => tracing::info!(%peer, error = %e, "STARTTLS handshake failed"),
                }
            }
        });
    }
}

enum Ended {
    Closed,
    StartTls,
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    line: &str,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(line.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// Reads one line (up to LF) of at most `max` bytes; longer lines are read through and
/// reported as `Long`. `None` at the end of the stream.
async fn read_line<S: AsyncBufRead + Unpin>(
    io: &mut S,
    max: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut long = false;
    loop {
        let buf = io.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !long {
                None
            } else {
                Some(long)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if line.len() + n <= max {
            line.extend_from_slice(chunk);
        } else {
            long = true;
        }
        io.consume(n);
        if done {
            return Ok(Some(long));
        }
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    rt: &Arc<Runtime>,
    io: &mut BufReader<S>,
    offer_tls: bool,
    peer: std::net::SocketAddr,
) -> Ended {
    let domain = rt.email.config().domain.clone();
    let max = rt.email.config().max_message_bytes;
    let mut helo = false;
    let mut mail_from: Option<String> = None;
    let mut recipients: Vec<String> = Vec::new();
    let mut errors = 0u32;
    let mut line = Vec::new();
    loop {
        let read = tokio::time::timeout(IDLE, read_line(io, MAX_COMMAND, &mut line)).await;
        let long = match read {
            Err(_) => {
                let _ = reply(io, "421 4.4.2 idle for too long; closing").await;
                return Ended::Closed;
            }
            Ok(Err(_)) | Ok(Ok(None)) => return Ended::Closed,
            Ok(Ok(Some(long))) => long,
        };
        if long {
            errors += 1;
            if reply(io, "500 5.5.2 line too long").await.is_err() {
                return Ended::Closed;
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let answer: String = match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => {
                "501 5.5.4 say who you are: EHLO your.domain".into()
            }
            "EHLO" => {
                helo = true;
                mail_from = None;
                recipients.clear();
                let mut lines = vec![
                    format!("250-{domain} hello {arg}"),
                    format!("250-SIZE {max}"),
                    "250-8BITMIME".into(),
                    "250-PIPELINING".into(),
                ];
                if offer_tls {
                    lines.push("250-STARTTLS".into());
                }
                lines.push("250 ENHANCEDSTATUSCODES".into());
                lines.join("\r\n")
            }
            "HELO" => {
                helo = true;
                mail_from = None;
                recipients.clear();
                format!("250 {domain}")
            }
            "STARTTLS" if offer_tls => {
                if reply(io, "220 2.0.0 ready to start TLS").await.is_err() {
                    return Ended::Closed;
                }
                return Ended::StartTls;
            }
            "STARTTLS" => "502 5.5.1 TLS is not offered here".into(),
            "MAIL" if !helo => "503 5.5.1 say EHLO first".into(),
            "MAIL" if mail_from.is_some() => {
                "503 5.5.1 a message is already begun; RSET first".into()
            }
            "MAIL" => match path_of(arg, "FROM:") {
                None => "501 5.5.4 expected MAIL FROM:<address>".into(),
                Some((from, params)) => {
                    let size = params.split_whitespace().find_map(|p| {
                        p.get(..5)
                            .filter(|k| k.eq_ignore_ascii_case("SIZE="))
                            .and_then(|_| p[5..].parse::<usize>().ok())
                    });
                    match size {
                        Some(size) if size > max => format!(
                            "552 5.3.4 the message is {size} bytes; this server takes at most {max}"
                        ),
                        _ => {
                            mail_from = Some(from);
                            "250 2.1.0 sender ok".into()
                        }
                    }
                }
            },
            "RCPT" if mail_from.is_none() => "503 5.5.1 MAIL FROM first".into(),
            "RCPT" => match path_of(arg, "TO:") {
                None => "501 5.5.4 expected RCPT TO:<address>".into(),
                Some(_) if recipients.len() >= MAX_RECIPIENTS => {
                    "452 4.5.3 too many recipients; send the rest in another message".into()
                }
                Some((to, _)) => {
                    let rt2 = rt.clone();
                    let to2 = to.clone();
                    let takes = tokio::task::spawn_blocking(move || rt2.email.takes(&rt2, &to2))
                        .await
                        .unwrap_or(false);
                    if takes {
                        recipients.push(to.clone());
                        format!("250 2.1.5 <{to}> ok")
                    } else {
                        format!("550 5.1.1 <{to}>: no such mailbox here")
                    }
                }
            },
            "DATA" if mail_from.is_none() => "503 5.5.1 MAIL FROM first".into(),
            "DATA" if recipients.is_empty() => "554 5.5.1 no valid recipients".into(),
            "DATA" => {
                if reply(io, "354 end the message with a line holding only a dot")
                    .await
                    .is_err()
                {
                    return Ended::Closed;
                }
                let Some((message, too_large)) = read_data(io, max).await else {
                    return Ended::Closed;
                };
                let from = mail_from.take().unwrap_or_default();
                let to = std::mem::take(&mut recipients);
                if too_large {
                    format!(
                        "552 5.3.4 the message is larger than the {max} bytes this server takes"
                    )
                } else {
                    let rt2 = rt.clone();
                    let accepted = tokio::task::spawn_blocking(move || {
                        rt2.email.accept(&message, &from, &to, "smtp")
                    })
                    .await;
                    match accepted {
                        Ok(Ok(ids)) => format!("250 2.0.0 queued as {}", ids.join(",")),
                        Ok(Err(MailError::TooLarge { max, .. })) => format!(
                            "552 5.3.4 the message is larger than the {max} bytes this server takes"
                        ),
                        Ok(Err(e)) => {
                            tracing::error!(%peer, error = %e, "a mail could not be stored; the sender was told to try again");
                            "451 4.3.0 the message cannot be stored now; try again later".into()
                        }
                        Err(_) => {
                            "451 4.3.0 the message cannot be stored now; try again later".into()
                        }
                    }
                }
            }
            "RSET" => {
                mail_from = None;
                recipients.clear();
                "250 2.0.0 reset".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "VRFY" => "252 2.5.0 cannot verify; send the message and see".into(),
            "QUIT" => {
                let _ = reply(io, "221 2.0.0 bye").await;
                return Ended::Closed;
            }
            "AUTH" => {
                "502 5.5.1 this server receives mail for its own addresses; no AUTH needed".into()
            }
            _ => {
                errors += 1;
                "500 5.5.2 command not recognized".into()
            }
        };
        if answer.starts_with('5') && !answer.starts_with("550") && !answer.starts_with("552") {
            errors += 1;
        }
        if errors > MAX_ERRORS {
            let _ = reply(io, "421 4.7.0 too many errors; closing").await;
            return Ended::Closed;
        }
        if reply(io, &answer).await.is_err() {
            return Ended::Closed;
        }
        if answer.starts_with("250 2.0.0 queued") {
            ACKNOWLEDGED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Set once this process has told a sender a mail is queued. Read only by the test-only
/// failpoint that stops the process after a contact starts: the window it tests comes after
/// the acknowledgement, so it waits for it.
pub(super) static ACKNOWLEDGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Reads a message up to the line holding a lone dot, undoing dot-stuffing. Past `max` bytes
/// the rest is read and dropped (`true`: too large). `None`: the connection went away.
async fn read_data<S: AsyncBufRead + Unpin>(io: &mut S, max: usize) -> Option<(Vec<u8>, bool)> {
    let mut message = Vec::new();
    let mut too_large = false;
    let mut line = Vec::new();
    loop {
        let read = tokio::time::timeout(IDLE, read_line(io, 1 << 20, &mut line)).await;
        let long = match read {
            Ok(Ok(Some(long))) => long,
            _ => return None,
        };
        if line == b".\r\n" || line == b".\n" {
            return Some((message, too_large));
        }
        if long {
            too_large = true;
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + body.len() > max {
            too_large = true;
            message.clear();
        }
        if !too_large {
            message.extend_from_slice(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_ends_at_a_lone_dot_and_is_unstuffed() {
        let input: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n";
        let mut reader = tokio::io::BufReader::new(input);
        let (message, too_large) = read_data(&mut reader, 1000).await.unwrap();
        assert!(!too_large);
        assert_eq!(message, b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n");
        let mut reader = tokio::io::BufReader::new(input);
        let (_, too_large) = read_data(&mut reader, 10).await.unwrap();
        assert!(too_large);
        let mut reader = tokio::io::BufReader::new(&b"no end"[..]);
        assert!(read_data(&mut reader, 1000).await.is_none());
    }
}
