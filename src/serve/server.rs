//! The HTTP edge: binding `--listen`, accepting connections, and the limits that keep slow or
//! idle clients from locking the endpoint.
//!
//! - **Header timeout** (`--http-header-timeout`): a connection must send a complete request head
//!   within it, counted from the moment the server starts reading that head: for a new connection
//!   from accept, for a keep-alive connection from the end of the previous response. So it bounds
//!   both half-sent requests (slowloris) and idle keep-alive connections. hyper enforces it.
//! - **Request timeout** (`--http-request-timeout`): reading the body and answering. A client that
//!   drips its body gets 408 and the connection is closed.
//! - **Connection cap** (`--http-max-connections`, lowered to fit the open-file limit): when a new
//!   connection arrives at the cap, the *oldest idle* connection (one with no request in progress:
//!   a stalled half-sent request, or an idle keep-alive) is closed to make room. A client that
//!   sends its request at once (a probe, GitHub) is therefore always served, while stalled clients
//!   are the ones that lose their seat; a connection is refused (accepted and closed) only when
//!   every seat holds a request in progress.
//! - The soft open-file limit is raised to the hard one at start ([`raise_fd_limit`]), so the cap,
//!   not `EMFILE`, is what bounds connections.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// File descriptors kept free for everything else the process opens (git, the Docker socket,
/// state files) when the connection cap is derived from the open-file limit.
pub const FD_RESERVE: u64 = 128;
/// Pending connections the kernel queues before berth accepts them (tokio's default).
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed `accept` (`EMFILE`, `ENFILE`, `ENOBUFS`): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Read buffer per connection, which bounds a request head too (larger heads get 431): with the
/// connection cap, it bounds the memory that clients which never finish a head can hold.
const MAX_BUF: usize = 64 * 1024;
/// At most one warning per this interval for a repeated connection-level event (an attack must
/// not flood the log); the warning says how many happened.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts an event and logs it at most once per [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Throttled {
    count: u64,
    last: Option<std::time::Instant>,
}

impl Throttled {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            log(self.count);
            self.count = 0;
            self.last = Some(std::time::Instant::now());
        }
    }
}

/// Timeouts and limits of the HTTP endpoint (settings `http-*` in [`super::config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this; also the idle keep-alive timeout.
    pub header_timeout: Duration,
    /// Reading the body and answering must finish within this.
    pub request_timeout: Duration,
    /// Open connections at most (further lowered to fit the open-file limit).
    pub max_connections: usize,
}

/// `--listen` cannot be bound. Permanent: the process cannot serve and exits.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (--listen / BERTH_LISTEN): {reason}")]
pub struct ListenError {
    pub addr: SocketAddr,
    reason: String,
    /// Not a `#[source]`: `reason` already says it, and the chain would repeat it.
    cause: std::io::Error,
}

impl ListenError {
    /// Never transient: another process holds the address, or it is not this host's.
    pub fn is_transient(&self) -> bool {
        false
    }

    pub fn kind(&self) -> std::io::ErrorKind {
        self.cause.kind()
    }
}

/// Bind `addr` and listen, with an error that names the address, the setting and the cause.
/// `SO_REUSEADDR` is set (as tokio's and most servers' bind do): a restarted berth can bind
/// while connections of the previous process linger in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    listen().map_err(|cause| {
        let reason = match cause.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_string(),
            std::io::ErrorKind::AddrNotAvailable => "not an address of this host".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
            }
            _ => cause.to_string(),
        };
        ListenError {
            addr,
            reason,
            cause,
        }
    })
}

/// Raise the soft open-file limit to the hard one (systemd's soft default, 1024, is too low for
/// a server that must outlast many idle clients). Returns the soft limit now in force; logs the
/// change at debug. Failures are logged and leave the limit as it was.
pub fn raise_fd_limit() -> Option<u64> {
    let before = match rlimit::Resource::NOFILE.get() {
        Ok((soft, _hard)) => soft,
        Err(e) => {
            warn!("cannot read the open-file limit: {e}");
            return None;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(after) => {
            debug!(
                before,
                after, "open-file soft limit raised to the hard limit"
            );
            Some(after)
        }
        Err(e) => {
            warn!(before, "cannot raise the open-file limit: {e}");
            Some(before)
        }
    }
}

/// The connection cap for `limits` under the current open-file soft limit.
pub fn effective_max_connections(limits: &HttpLimits) -> usize {
    let by_fds = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    limits.max_connections.min(by_fds).max(1)
}

/// What happened to a connection offered to the table.
enum Admit {
    /// Seat `id`; the receiver fires when the connection is evicted.
    Seated(u64, oneshot::Receiver<()>),
    /// Every seat holds a request in progress.
    Full,
}

#[derive(Debug)]
struct Seat {
    in_flight: usize,
    evict: Option<oneshot::Sender<()>>,
}

/// The open connections, by accept order (ids increase), with their requests in progress.
#[derive(Debug, Default)]
struct Seats {
    next: u64,
    open: BTreeMap<u64, Seat>,
    evicted: u64,
}

#[derive(Debug, Default)]
struct Table(Mutex<Seats>);

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seat a new connection, evicting the oldest idle one when `cap` seats are taken.
    fn admit(&self, cap: usize) -> Admit {
        let mut seats = self.lock();
        if seats.open.len() >= cap {
            let victim = seats
                .open
                .iter()
                .find(|(_, s)| s.in_flight == 0)
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Admit::Full;
            };
            if let Some(mut seat) = seats.open.remove(&victim)
                && let Some(tx) = seat.evict.take()
            {
                let _ = tx.send(());
            }
            seats.evicted += 1;
        }
        let id = seats.next;
        seats.next += 1;
        let (tx, rx) = oneshot::channel();
        seats.open.insert(
            id,
            Seat {
                in_flight: 0,
                evict: Some(tx),
            },
        );
        Admit::Seated(id, rx)
    }

    fn in_flight(&self, id: u64) -> usize {
        self.lock().open.get(&id).map_or(0, |s| s.in_flight)
    }

    fn leave(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// A request started on `id`; it is not evictable until the guard drops.
    fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(seat) = self.lock().open.get_mut(&id) {
            seat.in_flight += 1;
        }
        Busy {
            table: self.clone(),
            id,
        }
    }
}

struct Busy {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(seat) = self.table.lock().open.get_mut(&self.id) {
            seat.in_flight = seat.in_flight.saturating_sub(1);
        }
    }
}

/// Serve `router` on `listener` with `limits` until `shutdown` completes; then stop accepting,
/// close the connections without a request in progress (idle or still sending a head), and let
/// requests in progress finish (each bounded by the request timeout).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = effective_max_connections(&limits);
    if let Ok(addr) = listener.local_addr() {
        info!(
            %addr,
            max_connections = cap,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            request_timeout_ms = limits.request_timeout.as_millis() as u64,
            "http server listening"
        );
    }
    let table = Arc::new(Table::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF);
    let mut refused = Throttled::default();
    let mut accept_failed = Throttled::default();

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    match e.kind() {
                        std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset => debug!("accept: {e}"),
                        _ => accept_failed.note(|n| warn!(failures = n, "cannot accept connections: {e}")),
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let (id, evicted) = match table.admit(cap) {
            Admit::Seated(id, evicted) => (id, evicted),
            Admit::Full => {
                drop(stream);
                refused.note(|n| warn!(%peer, max_connections = cap, refused = n, "connections refused: every connection has a request in progress"));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = {
            let table = table.clone();
            let router = router.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let busy = table.busy(id);
                let router = router.clone();
                async move {
                    let response = answer(router, req, limits.request_timeout).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let table = table.clone();
        let mut stop = stop_rx.clone();
        let grace = limits.request_timeout;
        tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, "connection closed: {e}");
                    }
                }
                _ = evicted => debug!(%peer, "connection closed: evicted by a newer one at the connection limit"),
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    // A connection without a request in progress (idle, or still sending its
                    // head) closes now; a request in progress may finish, within the grace.
                    if table.in_flight(id) > 0 {
                        conn.as_mut().graceful_shutdown();
                        if tokio::time::timeout(grace, conn).await.is_err() {
                            debug!(%peer, "connection closed: shutting down");
                        }
                    }
                }
            }
            table.leave(id);
        });
    }

    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let evicted = table.lock().evicted;
    if evicted > 0 {
        info!(evicted, "http server stopped");
    }
    Ok(())
}

/// Route one request, bounded by `timeout` (body read included).
async fn answer(router: Router, req: Request<Incoming>, timeout: Duration) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match tokio::time::timeout(timeout, router.oneshot(req.map(Body::new))).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            warn!(%method, path = %path.chars().take(100).collect::<String>(), "request timed out");
            (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                "request timed out\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(t: &Table, cap: usize) -> (u64, oneshot::Receiver<()>) {
        match t.admit(cap) {
            Admit::Seated(id, rx) => (id, rx),
            Admit::Full => panic!("full"),
        }
    }

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let t = Arc::new(Table::default());
        let (a, mut a_rx) = seat(&t, 2);
        let (b, mut b_rx) = seat(&t, 2);
        let busy_a = t.busy(a);
        // a has a request in progress: b, the oldest idle one, goes.
        let (_c, mut c_rx) = seat(&t, 2);
        assert!(b_rx.try_recv().is_ok());
        assert!(a_rx.try_recv().is_err());
        assert!(!t.lock().open.contains_key(&b));
        let _busy_c = t.busy(_c);
        // Both seats busy: refused.
        assert!(matches!(t.admit(2), Admit::Full));
        drop(busy_a);
        let (_d, _) = seat(&t, 2);
        assert!(a_rx.try_recv().is_ok());
        assert!(c_rx.try_recv().is_err());
        assert_eq!(t.lock().evicted, 2);
    }

    #[test]
    fn repeated_warnings_are_throttled() {
        let mut t = Throttled::default();
        let mut logged = Vec::new();
        for _ in 0..5 {
            t.note(|n| logged.push(n));
        }
        assert_eq!(logged, vec![1]);
        t.last = Some(std::time::Instant::now() - WARN_EVERY);
        t.note(|n| logged.push(n));
        assert_eq!(logged, vec![1, 5]);
    }

    #[test]
    fn leaving_frees_the_seat() {
        let t = Table::default();
        let (a, _a) = seat(&t, 1);
        t.leave(a);
        let (_b, mut b_rx) = seat(&t, 1);
        assert_eq!(t.lock().evicted, 0);
        assert!(b_rx.try_recv().is_err());
    }

    #[test]
    fn bind_names_the_address_and_the_setting() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = bind(addr).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot listen on {addr} (--listen / BERTH_LISTEN): address already in use")
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn a_restart_binds_while_old_connections_are_in_time_wait() {
        use std::io::Read;
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (server_side, _) = first.accept().unwrap();
        // The server closes first: its end (local port = the listening port) enters TIME_WAIT.
        drop(server_side);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(client);
        drop(first);
        let again = bind(addr).expect("rebinding with connections in TIME_WAIT");
        assert_eq!(again.local_addr().unwrap(), addr);
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_connections: usize::MAX,
        };
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(
            effective_max_connections(&limits) as u64,
            soft.saturating_sub(FD_RESERVE).max(1)
        );
        let small = HttpLimits {
            max_connections: 3,
            ..limits
        };
        assert_eq!(effective_max_connections(&small), 3);
    }
}
