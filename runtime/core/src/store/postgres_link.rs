//! Connections to PostgreSQL driven by the thread that waits for them: a store call writes
//! its request, sleeps in `poll(2)` on the connection's own socket and reads the answer
//! itself, with no runtime thread between the caller and the database.
//!
//! Why not a runtime: tokio-postgres drives each connection as a task, so a synchronous call
//! was handed to a runtime thread and handed back, two thread wake-ups per round trip. On a
//! two-core machine running three nodes those hand-offs were a fifth of all CPU (perf, the
//! cluster bench). The synchronous `postgres` crate gives each connection a runtime of its
//! own and cannot send a batch's statements in one round trip. So this module drives
//! tokio-postgres's connection future by hand; it is the only hand-written I/O of the store.
//!
//! Owns the sockets, the pool of idle connections and each connection's prepared statements;
//! never decides what a query means ([`super::postgres`] does).

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs as _;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// A connection's prepared statements, by text.
pub(super) type Statements = HashMap<String, Statement>;

/// The prepared statement for `query`, prepared on first use.
pub(super) async fn prepared(
    client: &Client,
    statements: &mut Statements,
    query: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = statements.get(query) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(query).await?;
    statements.insert(query.to_string(), statement.clone());
    Ok(statement)
}

/// The socket to the server, non-blocking: a read or write that would block is `Pending`,
/// and [`drive`] waits for the socket before polling again.
pub(super) struct Socket {
    stream: Stream,
    /// Set when a write would have blocked: [`drive`] then waits until it can write too.
    wants_write: Arc<AtomicBool>,
}

enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    /// How many places the configuration names (hosts, or `hostaddr`s for them).
    fn places(config: &Config) -> usize {
        config.get_hosts().len().max(config.get_hostaddrs().len())
    }

    /// Connects to place `i` of the configuration within `deadline`: its `hostaddr` when it
    /// has one, else its host (a Unix socket directory or a name to resolve).
    fn open(config: &Config, i: usize, deadline: Instant) -> io::Result<Socket> {
        let ports = config.get_ports();
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        let stream = match (config.get_hostaddrs().get(i), config.get_hosts().get(i)) {
            (Some(address), _) => tcp(config, &[(*address, port).into()], deadline)?,
            (None, Some(Host::Unix(dir))) => Stream::Unix(std::os::unix::net::UnixStream::connect(
                dir.join(format!(".s.PGSQL.{port}")),
            )?),
            (None, Some(Host::Tcp(name))) => {
                let addresses: Vec<_> = (name.as_str(), port).to_socket_addrs()?.collect();
                tcp(config, &addresses, deadline)?
            }
            (None, None) => return Err(io::Error::other("the address names no host")),
        };
        match &stream {
            Stream::Tcp(s) => s.set_nonblocking(true)?,
            Stream::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(Socket {
            stream,
            wants_write: Arc::default(),
        })
    }

    /// A second handle on the socket, to wait on while the connection owns this one.
    fn watch(&self) -> io::Result<OwnedFd> {
        match &self.stream {
            Stream::Tcp(s) => s.as_fd().try_clone_to_owned(),
            Stream::Unix(s) => s.as_fd().try_clone_to_owned(),
        }
    }
}

/// A TCP connection to the first of `addresses` that answers, with the configuration's
/// keepalives and user timeout, so that a peer that vanishes (a partition) fails a call in
/// seconds rather than when TCP gives up.
fn tcp(
    config: &Config,
    addresses: &[std::net::SocketAddr],
    deadline: Instant,
) -> io::Result<Stream> {
    let mut last = io::Error::other("the host has no address");
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        match std::net::TcpStream::connect_timeout(address, left) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let socket = socket2::SockRef::from(&stream);
                if config.get_keepalives() {
                    let mut keepalive =
                        socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    if let Some(interval) = config.get_keepalives_interval() {
                        keepalive = keepalive.with_interval(interval);
                    }
                    if let Some(retries) = config.get_keepalives_retries() {
                        keepalive = keepalive.with_retries(retries);
                    }
                    socket.set_tcp_keepalive(&keepalive)?;
                }
                socket.set_tcp_user_timeout(config.get_tcp_user_timeout().copied())?;
                return Ok(Stream::Tcp(stream));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What a read or write returned, as an async poll.
fn ready<T>(result: io::Result<T>, would_block: impl FnOnce()) -> Option<Poll<io::Result<T>>> {
    match result {
        Ok(n) => Some(Poll::Ready(Ok(n))),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            would_block();
            Some(Poll::Pending)
        }
        Err(e) => Some(Poll::Ready(Err(e))),
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Zeroed up to a bound: the codec hands over all of its spare capacity each time.
            let n = buf.remaining().min(64 * 1024);
            let unfilled = buf.initialize_unfilled_to(n);
            let result = match &mut this.stream {
                Stream::Tcp(s) => s.read(unfilled),
                Stream::Unix(s) => s.read(unfilled),
            };
            if let Some(poll) = ready(result, || {}) {
                return poll.map_ok(|n| buf.advance(n));
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let result = match &mut this.stream {
                Stream::Tcp(s) => s.write(data),
                Stream::Unix(s) => s.write(data),
            };
            if let Some(poll) = ready(result, || this.wants_write.store(true, SeqCst)) {
                return poll;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = match &this.stream {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
        Poll::Ready(done.or(Ok(())))
    }
}

type Connection = tokio_postgres::Connection<Socket, NoTlsStream>;

/// Set by whatever a future waits on when it is ready to go on.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

/// Polls `work` (and the connection it talks through, when there is one) until it is done,
/// sleeping on the socket whenever neither can go on. `None` when `deadline` passed first.
fn drive<T>(
    mut connection: Option<&mut Option<Pin<Box<Connection>>>>,
    socket: &OwnedFd,
    wants_write: &AtomicBool,
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let woken = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut work = std::pin::pin!(work);
    loop {
        woken.0.store(false, SeqCst);
        wants_write.store(false, SeqCst);
        if let Some(slot) = connection.as_deref_mut()
            && let Some(running) = slot.as_mut()
            && running.as_mut().poll(&mut cx).is_ready()
        {
            // The server ended the session or the link broke: dropping the connection
            // fails the requests still waiting for an answer.
            *slot = None;
            continue;
        }
        if let Poll::Ready(out) = work.as_mut().poll(&mut cx) {
            return Some(out);
        }
        if woken.0.load(SeqCst) {
            continue;
        }
        let mut wanted = PollFlags::IN;
        if wants_write.load(SeqCst) {
            wanted |= PollFlags::OUT;
        }
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                Some(
                    rustix::time::Timespec::try_from(left).unwrap_or(rustix::time::Timespec {
                        tv_sec: 1,
                        tv_nsec: 0,
                    }),
                )
            }
            None => None,
        };
        let mut fds = [PollFd::new(socket, wanted)];
        // Interrupted or failed: poll again, and the read or write says what went wrong.
        let _ = rustix::event::poll(&mut fds, timeout.as_ref());
    }
}

/// One connection, driven by the thread that uses it.
pub(super) struct Link {
    client: Client,
    connection: Option<Pin<Box<Connection>>>,
    statements: Statements,
    socket: OwnedFd,
    wants_write: Arc<AtomicBool>,
}

impl Link {
    /// Connects and logs in to the first of the configuration's places that accepts (each
    /// within the connect timeout, 5 s by default) and is what `target_session_attrs` asks for.
    fn connect(config: &Config) -> Result<Link, String> {
        let mut last = String::from("the address names no host");
        for i in 0..Socket::places(config) {
            match Link::connect_to(config, i) {
                Ok(link) => return Ok(link),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn connect_to(config: &Config, i: usize) -> Result<Link, String> {
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let deadline = Instant::now() + timeout;
        let socket = Socket::open(config, i, deadline).map_err(|e| e.to_string())?;
        let watch = socket.watch().map_err(|e| e.to_string())?;
        let wants_write = socket.wants_write.clone();
        let (client, connection) = drive(
            None,
            &watch,
            &wants_write,
            Some(deadline),
            config.connect_raw(socket, NoTls),
        )
        .ok_or_else(|| format!("no answer within {} s", timeout.as_secs()))?
        .map_err(|e| super::postgres::describe(&e))?;
        let mut link = Link {
            client,
            connection: Some(Box::pin(connection)),
            statements: Statements::new(),
            socket: watch,
            wants_write,
        };
        let wanted = match config.get_target_session_attrs() {
            TargetSessionAttrs::ReadWrite => Some("off"),
            TargetSessionAttrs::ReadOnly => Some("on"),
            _ => None,
        };
        if let Some(wanted) = wanted {
            let read_only = link
                .run(async |client, _| {
                    client
                        .query_one("SHOW transaction_read_only", &[])
                        .await
                        .map(|row| row.get::<_, String>(0))
                })
                .map_err(|e| super::postgres::describe(&e))?;
            if read_only != wanted {
                return Err(format!(
                    "the server's transaction_read_only is {read_only}, not what target_session_attrs asks for"
                ));
            }
        }
        Ok(link)
    }

    /// Runs `work` with this connection's client and prepared statements.
    pub(super) fn run<T>(&mut self, work: impl AsyncFnOnce(&Client, &mut Statements) -> T) -> T {
        let Link {
            client,
            connection,
            statements,
            socket,
            wants_write,
        } = self;
        drive(
            Some(connection),
            socket,
            wants_write,
            None,
            work(client, statements),
        )
        .expect("no deadline")
    }

    /// Whether the connection can take another request.
    fn usable(&self) -> bool {
        self.connection.is_some() && !self.client.is_closed()
    }

    /// Whether an idle connection is still open: what the server sent while it sat in the
    /// pool (its end on a restart or an idle timeout, a fatal error) is read first, without
    /// waiting, so a call is never sent down a connection that already ended.
    fn alive(&mut self) -> bool {
        if let Some(running) = self.connection.as_mut() {
            let waker = Waker::from(Arc::new(Woken(AtomicBool::new(false))));
            if running
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                self.connection = None;
            }
        }
        self.usable()
    }
}

/// Connections to one database: idle ones kept for the next call, at most `most` open.
pub(super) struct Links {
    config: Config,
    most: usize,
    /// The idle connections, and how many are open (idle or in use).
    idle: Mutex<(Vec<Link>, usize)>,
    freed: Condvar,
}

impl Links {
    pub(super) fn new(config: Config, most: usize) -> Links {
        Links {
            config,
            most,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
        }
    }

    /// An idle connection, a new one while fewer than `most` are open, else the first one
    /// given back within `wait`. Err: why a new one could not be made, or that all were busy.
    pub(super) fn take(&self, wait: Duration) -> Result<Held<'_>, String> {
        let started = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(mut link) = idle.0.pop() {
                if link.alive() {
                    return Ok(Held {
                        links: self,
                        link: Some(link),
                        discard: false,
                    });
                }
                idle.1 -= 1;
            }
            if idle.1 < self.most {
                idle.1 += 1;
                drop(idle);
                return match Link::connect(&self.config) {
                    Ok(link) => Ok(Held {
                        links: self,
                        link: Some(link),
                        discard: false,
                    }),
                    Err(e) => {
                        self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "all {} connections stayed busy for {} s",
                    self.most,
                    wait.as_secs()
                ));
            }
            idle = self
                .freed
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A connection taken from [`Links`], given back when dropped (closed instead when it broke,
/// was discarded, or its thread panicked mid-call).
pub(super) struct Held<'a> {
    links: &'a Links,
    link: Option<Link>,
    discard: bool,
}

impl Held<'_> {
    /// Closes this connection instead of keeping it (the session ended on the server).
    pub(super) fn discard(&mut self) {
        self.discard = true;
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = Link;
    fn deref(&self) -> &Link {
        self.link.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Link {
        self.link.as_mut().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let Some(link) = self.link.take() else { return };
        let keep = !self.discard && !std::thread::panicking() && link.usable();
        {
            let mut idle = self.links.idle.lock().unwrap_or_else(|p| p.into_inner());
            if keep {
                idle.0.push(link);
            } else {
                idle.1 -= 1;
            }
        }
        self.links.freed.notify_one();
    }
}
