//! The floor for HTTP figures: a handler that does nothing, on the same stack as the
//! Kairos server (axum on hyper on tokio), in its own runtime so that it competes for the
//! cores the way a separate server process would.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running no-op server; stops when dropped.
pub struct NoopServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Reads the whole request body (as the real handlers must) and answers a small JSON.
async fn noop(body: Bytes) -> Json<Value> {
    Json(json!({"active": true, "read": body.len()}))
}

impl NoopServer {
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new().route("/noop", post(noop));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/noop", self.addr)
    }
}

impl Drop for NoopServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Not joined: hyper's graceful shutdown waits for open keep-alive connections,
        // and the bench is about to exit anyway.
        drop(self.thread.take());
    }
}
