//! The process's background workers (outbox consumer, timers, poller, sweeps) are supervised:
//! a worker that panics or returns before shutdown is restarted after a short back-off, and
//! every death is recorded. `/healthz` fails once a worker keeps dying (a crash loop): the
//! kubelet's liveness probe then restarts the pod, and the death is in the logs and in
//! `botfleet_worker_restarts_total{bot,worker}` — instead of a pod that looks alive while its
//! outbox no longer sends.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// A worker that died this many times within [`CRASH_WINDOW`] makes the process unhealthy.
pub const CRASH_LOOP_DEATHS: usize = 3;
pub const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// The first restart comes after this; each further death in a row doubles it (up to 30 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Deaths of the process's workers, by (bot, worker).
#[derive(Debug, Default)]
pub struct Health {
    deaths: Mutex<HashMap<(String, &'static str), VecDeque<Instant>>>,
}

impl Health {
    fn died(&self, bot: &str, worker: &'static str) -> usize {
        let mut deaths = self.deaths.lock().unwrap_or_else(|p| p.into_inner());
        let list = deaths.entry((bot.to_string(), worker)).or_default();
        let now = Instant::now();
        list.push_back(now);
        while list.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            list.pop_front();
        }
        list.len()
    }

    /// Ok, or which workers are crash-looping (for /healthz's answer; no user data).
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        let deaths = self.deaths.lock().unwrap_or_else(|p| p.into_inner());
        let looping: Vec<String> = deaths
            .iter()
            .filter(|(_, list)| list.iter().filter(|t| now.duration_since(**t) <= CRASH_WINDOW).count() >= CRASH_LOOP_DEATHS)
            .map(|((bot, worker), _)| format!("{bot}/{worker}"))
            .collect();
        if looping.is_empty() { Ok(()) } else { Err(format!("workers crash-looping: {}", looping.join(", "))) }
    }
}

/// Runs `make()`'s future as worker `worker` of `bot` until `shutdown`, restarting it whenever
/// it panics or returns early.
pub fn supervise<F, Fut>(
    health: std::sync::Arc<Health>,
    metrics: Metrics,
    bot: String,
    worker: &'static str,
    shutdown: watch::Receiver<bool>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    supervise_with(FIRST_BACKOFF, health, metrics, bot, worker, shutdown, make)
}

fn supervise_with<F, Fut>(
    first_backoff: Duration,
    health: std::sync::Arc<Health>,
    metrics: Metrics,
    bot: String,
    worker: &'static str,
    mut shutdown: watch::Receiver<bool>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = first_backoff;
        loop {
            let started = Instant::now();
            let outcome = tokio::spawn(make()).await;
            if *shutdown.borrow() {
                return;
            }
            let why = match outcome {
                Ok(()) => "returned before shutdown".to_string(),
                Err(e) if e.is_panic() => "panicked".to_string(),
                Err(e) => format!("was cancelled: {e}"),
            };
            let deaths = health.died(&bot, worker);
            metrics.worker_restarted(&bot, worker);
            tracing::error!(bot = %bot, worker, deaths_in_window = deaths, "a background worker {why}; restarting it");
            // A worker that ran a good while before dying starts the back-off afresh.
            if started.elapsed() > MAX_BACKOFF * 2 {
                backoff = first_backoff;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_dying_worker_is_restarted_and_a_crash_loop_fails_the_health_check() {
        let health = Arc::new(Health::default());
        let metrics = Metrics::new();
        let (tx, rx) = watch::channel(false);
        // The outbox dies twice, then runs.
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let stop = rx.clone();
        let outbox =
            supervise_with(Duration::from_millis(1), health.clone(), metrics.clone(), "alpha".into(), "outbox", rx.clone(), move || {
                let (counter, mut stop) = (counter.clone(), stop.clone());
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("a bug");
                    }
                    // A well-behaved worker: runs until shutdown, then returns.
                    let _ = stop.wait_for(|s| *s).await;
                }
            });
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(health.check().is_ok(), "two deaths and a living worker are no crash loop");
        assert!(metrics.render().contains(r#"botfleet_worker_restarts_total{bot="alpha",worker="outbox"} 2"#), "{}", metrics.render());
        // The poller returns at once every time: a crash loop.
        let poller = supervise_with(Duration::from_millis(1), health.clone(), metrics.clone(), "alpha".into(), "poller", rx, || async {});
        while health.check().is_ok() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let err = health.check().expect_err("a crash loop");
        assert!(err.contains("alpha/poller") && !err.contains("outbox"), "{err}");
        // Shutdown ends both supervisors.
        tx.send_replace(true);
        for handle in [outbox, poller] {
            tokio::time::timeout(Duration::from_secs(5), handle).await.expect("the supervisor stops at shutdown").expect("no panic");
        }
        // Deaths age out of the window.
        assert!(health.check_at(Instant::now() + CRASH_WINDOW + Duration::from_secs(1)).is_ok());
    }

    #[tokio::test]
    async fn a_worker_that_returns_at_shutdown_is_not_a_death() {
        let health = Arc::new(Health::default());
        let (tx, rx) = watch::channel(false);
        let inner = rx.clone();
        let handle = supervise(health.clone(), Metrics::new(), "alpha".into(), "timers", rx, move || {
            let mut stop = inner.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send_replace(true);
        handle.await.expect("stopped");
        assert!(health.check().is_ok());
    }
}
