//! A faithful stand-in for the Telegram Bot API, for tests, benchmarks and local runs.
//!
//! Three ways to use it:
//! - in Rust tests: `FakeTelegram::start().await` binds 127.0.0.1:0; `fake.api_url()` is the
//!   base URL to give any Bot API client; `fake.sim()` plays the users;
//! - standalone: `fake-telegram --listen 127.0.0.1:8081` (the /sim API is documented in
//!   tests/README.md);
//! - embedded: `fake_telegram::embedded(World::default())` gives the routes to mount in another
//!   axum server and the `Sim` that drives them (for the runtime's local mode, still to come).
//!
//! It behaves like Telegram where our runtime and operator depend on Telegram's behaviour:
//! the envelope, 401 for unknown tokens, per-bot files, getUpdates conflicts, webhook
//! redelivery and per-chat order, flood limits with retry_after, 403 for blocked bots, and
//! Stars payments with the 10-second pre-checkout deadline.

pub mod html;
pub mod methods;
pub mod params;
pub mod server;
pub mod sim;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use params::ApiError;
pub use server::Shared;
pub use sim::{BotInfo, InvoiceRef, MediaSpec, PayOutcome, Sim};
pub use state::{FaultKind, FaultSpec, InboxEntry, InboxEvent, Limits, MediaKind, Settings, SimUser, Stats, World};

/// A running fake Telegram server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeTelegram {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    /// Starts on the given address, with Telegram's default limits.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, World::default()))
    }

    /// Starts on 127.0.0.1 with a free port; webhook deliveries also trust the CA in `ca_pem`
    /// (an HTTPS front with a test CA, as a real ingress has a public one).
    pub async fn start_trusting(ca_pem: &[u8]) -> std::io::Result<Self> {
        let ca = reqwest::Certificate::from_pem(ca_pem).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve_shared(listener, Shared::trusting(World::default(), Some(ca))))
    }

    /// Serves an already bound listener with the given initial world.
    pub fn serve(listener: TcpListener, world: World) -> Self {
        Self::serve_shared(listener, Shared::new(world))
    }

    fn serve_shared(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "fake telegram server stopped");
            }
        });
        Self { shared, addr, shutdown: Some(tx), task: Some(task) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a Bot API client instead of https://api.telegram.org.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of one method for one token (what a raw HTTP client calls).
    pub fn method_url(&self, token: &str, method: &str) -> String {
        format!("http://{}/bot{token}/{method}", self.addr)
    }

    pub fn sim(&self) -> Sim {
        Sim::new(self.shared.clone())
    }

    /// Stops accepting connections, ends background work, and gives open requests (long
    /// polls, held faults) a second to finish before cutting them.
    pub async fn stop(mut self) {
        self.shared.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(std::time::Duration::from_secs(1), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The fake's routes over the given state, to mount inside another server.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    server::router(shared)
}

/// The fake for embedding: its routes and the in-process handle that drives them.
pub fn embedded(world: World) -> (axum::Router, Sim) {
    let shared = Shared::new(world);
    (server::router(shared.clone()), Sim::new(shared))
}
