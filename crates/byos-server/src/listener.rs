//! Accept loops: HTTPS on TCP for the public APIs, plain HTTP on the operator's Unix socket.
//! Each connection is served on its own task; the request carries its [`NetworkOrigin`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use byos_core::NetworkOrigin;
use byos_identity::api::operator::OperatorSocket;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Plaintext rustls may buffer per connection (its default is 64 KiB).
const TLS_BUFFER_LIMIT: usize = 1024 * 1024;

/// The longest `x-ms-client-request-id` echoed back (Azure's limit for the header).
const MAX_CLIENT_REQUEST_ID: usize = 1024;

/// Wraps `router` as a hyper service that stamps every request with `extension`, notes on its
/// connection that a request came, and echoes the client's `x-ms-client-request-id`, as every Azure
/// service does.
fn service<E: Clone + Send + Sync + 'static>(
    router: Router,
    extension: E,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(extension.clone());
        activity.requested.store(true, Ordering::Relaxed);
        let client_request_id =
            request.headers().get("x-ms-client-request-id").filter(|v| v.len() <= MAX_CLIENT_REQUEST_ID).cloned();
        let has_body = !hyper::body::Body::is_end_stream(request.body());
        let read = Arc::new(AtomicBool::new(false));
        let (parts, incoming) = request.into_parts();
        let body = axum::body::Body::new(Noted { inner: incoming, read: Arc::clone(&read) });
        let response = router.clone().oneshot(hyper::Request::from_parts(parts, body));
        async move {
            let mut response = response.await?;
            if let Some(id) = client_request_id {
                response.headers_mut().entry("x-ms-client-request-id").or_insert(id);
            }
            if has_body && !read.load(Ordering::Relaxed) {
                // Answered without reading the body (a refusal): hyper will not reuse this connection,
                // so the client is told to open another rather than find this one closed under it.
                response
                    .headers_mut()
                    .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}

/// A request body that notes when it has been read to its end.
struct Noted {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

impl hyper::body::Body for Noted {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// `router` with repeated leading slashes of a request's path collapsed into one before routing,
/// for the main listener and those opened at run time (accounts, vaults): clients join a base URL ending in `/` with a path starting with one
/// (`az cloud register --endpoint-resource-manager https://host:port/` asks for
/// `//metadata/endpoints`), and Azure's front door accepts that for every API behind it.
pub fn collapsing_leading_slashes(router: Router) -> Router {
    Router::new().fallback_service(router.map_request(collapse_leading_slashes))
}

fn collapse_leading_slashes(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    if !uri.path().starts_with("//") {
        return request;
    }
    let path = format!("/{}", uri.path().trim_start_matches('/'));
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(collapsed) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = collapsed;
    }
    request
}

/// How long connections may stay open, and how many at once (security review F6: without these,
/// idle or trickling clients exhaust the file descriptors and take every listener down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The whole header of a request must arrive within this time, and a connection that has not
    /// sent a request yet is closed after it.
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way is closed after this, whether it waits for the
    /// next request or stalls in the middle of one (a body trickling in, a response not read).
    pub idle_timeout: Duration,
    /// Open HTTPS connections, over every listener, those upgraded to WebSockets included; more
    /// wait in the kernel's backlog until one closes. The operator's control socket is not counted.
    pub max_connections: usize,
}

/// File descriptors kept free of connections: the store, objects being written, listeners, logs.
const RESERVED_DESCRIPTORS: u64 = 256;
const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: default_max_connections(),
        }
    }
}

/// At most 4096 connections, and fewer when the process may open fewer files: the descriptor
/// limit less a reserve (or half the limit when it is small), so that accepting never fails.
fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let usable = soft.saturating_sub(RESERVED_DESCRIPTORS).max(soft / 2).max(16);
    usize::try_from(usable.min(DEFAULT_MAX_CONNECTIONS)).unwrap_or(4096)
}

/// When a connection last moved bytes, and whether it has sent a request yet.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    requested: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity { epoch: Instant::now(), last_ms: AtomicU64::new(0), requested: AtomicBool::new(false) })
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Resolves once no bytes have moved on the connection for `idle_timeout`, or for
/// `header_read_timeout` before its first request (hyper's own header timeout starts only once it
/// reads a request, after the protocol is detected).
async fn idle(activity: &Activity, limits: ConnectionLimits) {
    loop {
        let limit =
            if activity.requested.load(Ordering::Relaxed) { limits.idle_timeout } else { limits.header_read_timeout };
        let quiet = activity.quiet_for();
        if quiet >= limit {
            return;
        }
        tokio::time::sleep(limit - quiet).await;
    }
}

/// A connection's stream that stamps its [`Activity`] whenever bytes move, and holds the
/// connection's slot for as long as the stream lives: a connection upgraded to a WebSocket outlives
/// its HTTP serving, and still counts against `max_connections` until its socket closes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// None on the operator's control socket, which is not counted.
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stamp_written(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stamp_written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Watched<S> {
    fn stamp_written(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

/// A connection builder with hyper's timer, so that its header read timeout applies.
fn builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Serves HTTPS on `listener` until `stop` flips, then lets in-flight connections finish.
/// Opens listeners after start-up (Key Vault's per-vault ports), sharing TLS, shutdown and the
/// connection tracking of the fixed listeners.
pub struct Hub {
    pub bind: std::net::IpAddr,
    pub tls: Arc<rustls::ServerConfig>,
    pub stop: CancellationToken,
    pub connections: Connections,
}

#[async_trait::async_trait]
impl byos_http::Listeners for Hub {
    async fn open(&self, port: u16, router: Router) -> std::io::Result<(u16, byos_http::ListenerHandle)> {
        let listener = TcpListener::bind(std::net::SocketAddr::new(self.bind, port)).await?;
        let port = listener.local_addr()?.port();
        let stop = self.stop.child_token();
        let guard = stop.clone().drop_guard();
        // Clients that keep an endpoint's trailing slash (`DocumentIntelligenceClient`) ask for `//path`.
        let router = collapsing_leading_slashes(router);
        tokio::spawn(serve_tls(listener, Arc::clone(&self.tls), router, stop, self.connections.clone()));
        Ok((port, byos_http::ListenerHandle(Box::new(guard))))
    }
}

/// Where a listener's connection tasks are tracked, so shutdown can wait until they (and the state
/// they hold) are gone, and the limits they live under.
#[derive(Clone)]
pub struct Connections {
    pub tracker: TaskTracker,
    pub limits: ConnectionLimits,
    /// One permit per open HTTPS connection, shared by every listener.
    open: Arc<Semaphore>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Self {
        Connections { tracker: TaskTracker::new(), limits, open: Arc::new(Semaphore::new(limits.max_connections)) }
    }

    /// A slot for one more connection, waiting (and saying so, once per wait) while all are taken.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() {
            return Some(permit);
        }
        tracing::warn!(
            max_connections = self.limits.max_connections,
            "connection limit reached: new connections wait until one closes"
        );
        Arc::clone(&self.open).acquire_owned().await.ok()
    }
}

/// Serves one connection until it ends, until it is idle past its limits (then it is dropped,
/// which closes it), or until `stop` asks it to finish its in-flight requests.
async fn serve_connection<C>(connection: C, stop: CancellationToken, activity: &Activity, limits: ConnectionLimits)
where
    C: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        _ = idle(activity, limits) => return tracing::debug!("closing an idle connection"),
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A hyper connection that can be asked to finish gracefully.
pub trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I, S, E> GracefulConnection for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper_util::server::conn::auto::Connection::graceful_shutdown(self)
    }
}

pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    stop: CancellationToken,
    connections: Connections,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let slot = tokio::select! {
            slot = connections.slot() => slot,
            _ = stop.cancelled() => break,
        };
        let Some(slot) = slot else { break };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_errors.failed(&e).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, stop, limits) = (acceptor.clone(), router.clone(), stop.clone(), connections.limits);
        connections.tracker.spawn(async move {
            let activity = Activity::new();
            let tcp = Watched { inner: tcp, activity: Arc::clone(&activity), _slot: Some(slot) };
            let mut tls_stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // Let a whole blob piece be encrypted per write instead of 64 KiB at a time.
            tls_stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            let origin = NetworkOrigin { ip: Some(peer.ip()), tls: true };
            let service = service(router, origin, Arc::clone(&activity));
            let builder = builder(limits);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
            serve_connection(connection, stop, &activity, limits).await;
        });
    }
}

/// Failed accepts (most often: out of file descriptors) back off, and are logged at most every few
/// seconds instead of flooding the log while they last.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    const LOG_EVERY: Duration = Duration::from_secs(5);
    const BACKOFF: Duration = Duration::from_millis(100);

    async fn failed(&mut self, error: &std::io::Error) {
        if self.last_logged.is_none_or(|at| at.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(%error, suppressed = self.suppressed, "accept failed");
            self.last_logged = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(Self::BACKOFF).await;
    }
}

/// Serves the operator API on the control socket until `stop` flips.
pub async fn serve_control(listener: UnixListener, router: Router, stop: CancellationToken, connections: Connections) {
    let mut accept_errors = AcceptErrors::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors.failed(&e).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (router, stop, limits) = (router.clone(), stop.clone(), connections.limits);
        connections.tracker.spawn(async move {
            let activity = Activity::new();
            let stream = Watched { inner: stream, activity: Arc::clone(&activity), _slot: None };
            let service = service(router, OperatorSocket, Arc::clone(&activity));
            let builder = builder(limits);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            serve_connection(connection, stop, &activity, limits).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collapsed(uri: &str) -> String {
        let request = axum::extract::Request::builder().uri(uri).body(axum::body::Body::empty());
        let request = request.unwrap_or_else(|e| panic!("{uri}: {e}"));
        collapse_leading_slashes(request).uri().to_string()
    }

    #[test]
    fn only_repeated_leading_slashes_are_collapsed() {
        assert_eq!(
            collapsed("//metadata/endpoints?api-version=2022-09-01"),
            "/metadata/endpoints?api-version=2022-09-01"
        );
        assert_eq!(collapsed("///subscriptions"), "/subscriptions");
        assert_eq!(collapsed("https://127.0.0.1:1//subscriptions?a=b"), "https://127.0.0.1:1/subscriptions?a=b");
        assert_eq!(collapsed("/subscriptions//x"), "/subscriptions//x");
        assert_eq!(collapsed("/"), "/");
    }
}
