//! The accept loop: TCP, the TLS handshake, then hyper serving the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::PeerCertificates;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops accepting
/// and waits for the open connections to finish their requests (as `axum::serve` does).
/// A failed handshake (an old TLS version, no client certificate where one is required, a
/// client that gave up) closes that connection only, and is logged at debug level.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Some((tls, certificates)) = handshake(&acceptor, tcp, peer).await else {
                return;
            };
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                if let Some(certificates) = &certificates {
                    request.extensions_mut().insert(certificates.clone());
                }
                router.clone().oneshot(request)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Option<PeerCertificates>,
)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            // Certificates are present only when the verifier accepted them.
            let certificates = tls
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
            Some((tls, certificates))
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
