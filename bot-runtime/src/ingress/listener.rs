//! The HTTP listener in front of the webhook: HTTP/1.1 (what Telegram speaks), with the limits
//! a public endpoint needs that `axum::serve` does not set — a cap on open connections, a
//! deadline for a request's headers (a client that opens connections and sends nothing, or
//! dribbles headers, cannot hold them), and a graceful end on shutdown (requests in progress
//! finish, idle keep-alive connections close). The body's own deadline and size cap are in
//! server.rs, after the secret is checked.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Open connections per process; more wait in the kernel's accept queue (Telegram opens at
/// most the webhook's `max_connections`, 40 by default, per bot).
pub const MAX_CONNECTIONS: u32 = 1024;
/// A request's headers must arrive within this (Telegram sends them at once).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in progress before the process goes anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` turns true, then lets requests in progress
/// finish (up to [`DRAIN_TIMEOUT`]).
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS as usize));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    // Every connection returns its permit when it ends: taking them all waits for the last.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(MAX_CONNECTIONS)).await;
    Ok(())
}
