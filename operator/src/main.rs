//! The operator binary. Until the controllers land it offers the one operator task that
//! already exists: checking a bot token against Telegram (what token rotation will do).

use anyhow::Context as _;
use botfleet_crds::token::BotToken;
use botfleet_operator::telegram::{DEFAULT_API_URL, TelegramClient};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "operator", about = "BotFleet Kubernetes operator")]
struct Args {
    /// Telegram Bot API base URL (tests and local runs point it at the fake Telegram).
    #[arg(long, env = "TELEGRAM_API_URL", default_value = DEFAULT_API_URL)]
    telegram_api_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a bot token with getMe; prints the bot's username and the token's fingerprint.
    CheckToken {
        /// File holding the token (as mounted from a Secret).
        #[arg(long)]
        token_file: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    match args.command {
        Command::CheckToken { token_file } => {
            let raw = std::fs::read_to_string(&token_file).with_context(|| format!("reading {}", token_file.display()))?;
            let token = BotToken::parse(&raw).with_context(|| format!("{} does not hold a bot token", token_file.display()))?;
            let me = TelegramClient::new(&args.telegram_api_url).get_me(&token).await?;
            println!("@{} (id {}) token {}", me.username, me.id, token.fingerprint());
        }
    }
    Ok(())
}
