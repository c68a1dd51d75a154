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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Plaintext rustls may buffer per connection (its default is 64 KiB).
const TLS_BUFFER_LIMIT: usize = 1024 * 1024;

/// Wraps `router` as a hyper service that stamps every request with `extension`.
fn service<E: Clone + Send + Sync + 'static>(
    router: Router,
    extension: E,
) -> impl hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(extension.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    })
}

/// Serves HTTPS on `listener` until `stop` flips, then lets in-flight connections finish.
/// How a listener hands its connections to the server's shutdown: `graceful` lets them be told to
/// finish, `tracker` lets shutdown wait until their tasks (and the state they hold) are gone.
#[derive(Clone)]
pub struct Connections {
    pub graceful: Arc<GracefulShutdown>,
    pub tracker: TaskTracker,
}

pub async fn serve_tls(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router, mut stop: watch::Receiver<bool>, connections: Connections) {
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
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), connections.graceful.watcher());
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
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves the operator API on the control socket until `stop` flips.
pub async fn serve_control(listener: UnixListener, router: Router, mut stop: watch::Receiver<bool>, connections: Connections) {
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
            _ = stop.changed() => break,
        };
        let (router, watcher) = (router.clone(), connections.graceful.watcher());
        connections.tracker.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let svc = service(router, OperatorSocket);
            let connection = builder.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
    }
}
