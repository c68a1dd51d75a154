//! Accept loops: HTTPS on TCP for the public APIs, plain HTTP on the operator's Unix socket.
//! Each connection is served on its own task; the request carries its [`NetworkOrigin`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use byos_core::NetworkOrigin;
use byos_identity::api::operator::OperatorSocket;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Plaintext rustls may buffer per connection (its default is 64 KiB).
const TLS_BUFFER_LIMIT: usize = 1024 * 1024;

/// Wraps `router` as a hyper service that stamps every request with `extension`.
fn service<E: Clone + Send + Sync + 'static>(
    router: Router,
    extension: E,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(extension.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    })
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
        tokio::spawn(serve_tls(listener, Arc::clone(&self.tls), router, stop, self.connections.clone()));
        Ok((port, byos_http::ListenerHandle(Box::new(guard))))
    }
}

/// Where a listener's connection tasks are tracked, so shutdown can wait until they (and the state
/// they hold) are gone.
#[derive(Clone)]
pub struct Connections {
    pub tracker: TaskTracker,
}

/// Serves one connection until it ends, or until `stop` asks it to finish its in-flight requests.
async fn serve_connection<C>(connection: C, stop: CancellationToken)
where
    C: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
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
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
        connections.tracker.spawn(async move {
            let mut tls_stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // Let a whole blob piece be encrypted per write instead of 64 KiB at a time.
            tls_stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            let origin = NetworkOrigin { ip: Some(peer.ip()), tls: true };
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service(router, origin));
            serve_connection(connection, stop).await;
        });
    }
}

/// Serves the operator API on the control socket until `stop` flips.
pub async fn serve_control(listener: UnixListener, router: Router, stop: CancellationToken, connections: Connections) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (router, stop) = (router.clone(), stop.clone());
        connections.tracker.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service(router, OperatorSocket));
            serve_connection(connection, stop).await;
        });
    }
}
