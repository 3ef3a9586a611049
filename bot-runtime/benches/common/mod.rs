//! What the runtime's bench binaries share: settings from the environment and what /proc says
//! about the runtime process they measure.

#![allow(dead_code)] // each bench uses what it needs

pub mod broadcast;

/// A number from the environment, or the default.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The process's resident memory now and at its peak (VmRSS, VmHWM), in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_split(pid);
    user + system
}

/// CPU seconds the process has used so far in user space and in the kernel, apart.
pub fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat (indexes 11 and 12 after the name).
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// The `p` quantile of sorted microseconds, in milliseconds.
pub fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize] as f64 / 1000.0
}

/// The resolved configuration of a webhook bot `name` (namespace `bench`, pool `pool`) whose
/// token and webhook secret are the files `token` and `secret` in `dir`, sending at most
/// `per_bot` messages a second; its users may send as fast as they like.
pub fn webhook_config(name: &str, pool: &str, dir: &std::path::Path, per_bot: u64) -> String {
    format!(
        "version: 1\nbot:\n  name: {name}\n  namespace: bench\n  pool: {pool}\n  ingress: {{mode: Webhook, publicUrl: 'https://bench.invalid', maxConnections: 100}}\n  features: {{}}\n  requiredChannels: []\n  admins: {{telegramIds: []}}\n  moderation: {{}}\n  locale: {{}}\n  matching: {{}}\n  lockChat: {{}}\n  referrals: {{}}\n  secrets: {{tokenFile: '{}', webhookSecretFile: '{}'}}\nplans: []\ncampaigns: []\nlimits:\n  perUser: {{messagesPerSecond: 1000, burst: 1000}}\n  onExceed: DropSilently\n  adminApiPerMinute: {{}}\n  outbound: {{perBotPerSecond: {per_bot}, perChatPerMinute: 100000}}\n",
        dir.join("token").display(),
        dir.join("secret").display()
    )
}

/// A `bot-runtime serve` child process under measurement, and its HTTP base URL.
pub struct Serve {
    pub child: std::process::Child,
    pub base: String,
}

impl Serve {
    /// Starts `bot-runtime serve` with the configuration `config` (YAML) on Postgres `db_url`
    /// and Redis (under `redis_prefix`), sending to the Telegram API at `api_url`, on `port`,
    /// and waits until its /readyz answers (a minute at most).
    pub async fn start(
        dir: &std::path::Path,
        config: &str,
        db_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        api_url: &str,
        port: u16,
    ) -> Serve {
        Self::start_under(&[], dir, config, db_url, redis_url, redis_prefix, api_url, port).await
    }

    /// [`Serve::start`] with the runtime run by `wrapper` (a command and its arguments, e.g.
    /// valgrind), which is given the binary and its arguments; it may take minutes to be ready.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_under(
        wrapper: &[String],
        dir: &std::path::Path,
        config: &str,
        db_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        api_url: &str,
        port: u16,
    ) -> Serve {
        std::fs::write(dir.join("config.yaml"), config).expect("config");
        let binary = env!("CARGO_BIN_EXE_bot-runtime");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => std::process::Command::new(binary),
        };
        let child = command
            .args(["serve", "--config"])
            .arg(dir.join("config.yaml"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", db_url)
            .env("REDIS_URL", redis_url)
            .env("REDIS_PREFIX", redis_prefix)
            .env("TELEGRAM_API_URL", api_url)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start bot-runtime serve");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            let limit = if wrapper.is_empty() { 60 } else { 600 };
            assert!(started.elapsed() < std::time::Duration::from_secs(limit), "the runtime did not become ready");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Serve { child, base }
    }
}

/// A `redis-server` of the bench's own, configured as production wants it (AOF on, noeviction),
/// so what it measures (its CPU, its `used_memory_peak`, which nothing resets) is this run's
/// alone. BENCH_REDIS_SERVER names another binary than `redis-server` (installed by `.ci/run`).
pub struct PrivateRedis {
    child: std::process::Child,
    pub url: String,
    pub conn: redis::aio::ConnectionManager,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    /// Starts it on `port` with its files in `dir`, and waits until it answers (10 s at most).
    #[allow(clippy::zombie_processes)] // the child is waited for in Drop, or before the panic
    pub async fn start(dir: &std::path::Path, port: u16) -> PrivateRedis {
        let mut child = Self::spawn(dir, port);
        let url = format!("redis://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        loop {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(conn) = redis::aio::ConnectionManager::new(client).await
            {
                return PrivateRedis { child, url, conn, port, dir: dir.to_path_buf() };
            }
            if started.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the bench's redis-server (BENCH_REDIS_SERVER) did not answer on port {port}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn spawn(dir: &std::path::Path, port: u16) -> std::process::Child {
        let binary = std::env::var("BENCH_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        std::process::Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--maxmemory-policy", "noeviction", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (BENCH_REDIS_SERVER): {e}"))
    }

    /// Stops it with SIGTERM (Redis flushes its AOF and exits), as a rolling restart does.
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and files (its AOF is loaded).
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.dir, self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seeds what the relay benches need for bot `alpha` of namespace `bench`: `users` registered
/// users (SQL rows carry the namespaced bot id), live chats between users 1..=2*`chats` (user u
/// with u±1) in the pool `bench/<pool>` (keys under `prefix`), and each chatting user known to
/// the fake Telegram. Returns the live chats the pool counts.
pub async fn seed_chats(
    db: &sqlx::PgPool,
    redis: redis::aio::ConnectionManager,
    prefix: &str,
    sim: &botfleet_tests::fake_telegram::Sim,
    pool: &str,
    users: i64,
    chats: i64,
) -> u64 {
    use bot_runtime::matching::{Gender, MatchPool, Member, Rules, Seeker, Want};
    sqlx::query(
        "INSERT INTO users (bot, user_id, language, stage, gender, age, reachable, created_ms, updated_ms) \
         SELECT 'bench/alpha', g, 'en', 'ready', CASE WHEN g % 2 = 0 THEN 'f' ELSE 'm' END, 30, 1, 0, 0 FROM generate_series(1, $1) g",
    )
    .bind(users)
    .execute(db)
    .await
    .expect("seed users");
    let matcher = bot_runtime::matching::redis::RedisPool::new(redis, bot_runtime::keys::Keys::new(prefix.to_string()));
    let pool = format!("bench/{pool}");
    let rules = Rules { recent_window: std::time::Duration::ZERO, ..Rules::default() };
    // One at a time: user u+1 (even) finds user u (odd) waiting, so the pairs are known.
    for u in 1..=2 * chats {
        // Within its pool a member is the bot's name (the pool carries the namespace).
        let seeker = Seeker {
            member: Member::new("alpha", u),
            gender: if u % 2 == 0 { Gender::Female } else { Gender::Male },
            want: Want::Anyone,
            vip: false,
        };
        matcher.search(&pool, &seeker, u, rules).await.expect("search");
    }
    for u in 1..=2 * chats {
        let _ = sim.add_user(botfleet_tests::fake_telegram::SimUser {
            id: u,
            first_name: format!("U{u}"),
            last_name: None,
            username: None,
            language_code: Some("en".into()),
            is_premium: false,
        });
    }
    matcher.active_chats(&pool).await.unwrap_or(0)
}

/// A TCP hop in front of a server (the bench's Postgres) that can be cut: every open connection
/// reset and the port closed (connections refused) — what a restart or a failover looks like
/// to the runtime — and restored on the same port, without touching the server (which other
/// work on this machine shares).
pub struct TcpCut {
    pub addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl TcpCut {
    pub async fn start(target: std::net::SocketAddr) -> TcpCut {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the TCP cut");
        let addr = listener.local_addr().expect("its address");
        let mut cut = TcpCut { addr, target, conns: Default::default(), accept: None };
        cut.serve(listener);
        cut
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (target, conns) = (self.target, self.conns.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        }));
    }

    /// Resets every connection and closes the port until [`TcpCut::restore`].
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for c in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            c.abort();
        }
    }

    /// Opens the port again (the same address).
    pub async fn restore(&mut self) {
        let started = std::time::Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(started.elapsed() < std::time::Duration::from_secs(10), "cannot bind {} again: {e}", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// `url` (scheme://user@host:port/db...) with its host and port replaced by this hop's.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (auth, tail) = match rest.split_once('@') {
            Some((a, t)) => (format!("{a}@"), t),
            None => (String::new(), rest),
        };
        let path = tail.find('/').map_or("", |i| &tail[i..]);
        format!("{scheme}://{auth}{}{path}", self.addr)
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.cut();
    }
}
