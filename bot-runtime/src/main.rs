//! `bot-runtime`: one binary, several roles.
//!
//! - `serve --config <file>`: one bot, as the operator deploys it (Postgres + Redis).
//! - `local [--manifests config/]`: every bot of a folder in one process, on SQLite and
//!   in-process state; a built-in fake Telegram when no token is given; `--simulate N`.
//! - `admin`: the fleet's admin dashboard and API (docs/ADMIN.md).
//! - `migrate`: applies the database migrations and exits.

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a profile of the relay path spent ~17% of the CPU in
/// malloc/free (many small, short-lived buffers per update); see docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// No `Debug`: the arguments hold connection URLs with passwords, and nothing may print them.
#[derive(Parser)]
#[command(name = "bot-runtime", version, about = "BotFleet bot runtime: anonymous chat bots (serve one bot, or run everything locally)")]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Run one bot from its resolved configuration (what the operator deploys).
    Serve(bot_runtime::roles::serve::ServeArgs),
    /// Serve the fleet's admin dashboard and API (no bot token; Postgres + Redis of the fleet).
    Admin(bot_runtime::roles::admin::AdminArgs),
    /// Run every bot declared in a folder of manifests in one process (SQLite, in-process state).
    Local(bot_runtime::roles::local::LocalArgs),
    /// Apply the database migrations (safe while other replicas start) and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing();
    let result = match args.role {
        Role::Serve(a) => bot_runtime::roles::serve::run(a).await,
        Role::Local(a) => bot_runtime::roles::local::run(a).await,
        Role::Admin(a) => bot_runtime::roles::admin::run(a).await,
        Role::Migrate { database_url } => migrate(&database_url).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors never carry a token: every source masks it, and this masks once more.
            let why = botfleet_crds::token::mask_tokens(&format!("{e:#}")).to_string();
            eprintln!("bot-runtime: {why}");
            // Kubernetes shows this file as the container's termination message (the operator
            // reads it into the BotInstance's status), so a pod that cannot start says why.
            let path = std::env::var("TERMINATION_LOG").unwrap_or_else(|_| "/dev/termination-log".into());
            let _ = std::fs::write(path, why.chars().take(4000).collect::<String>());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    let store = bot_runtime::store::sql::SqlStore::connect(url).await?;
    store.migrate().await?;
    println!("migrations applied");
    Ok(())
}
