//! The fake Telegram Bot API as a standalone server, for manual runs and for clients in other
//! languages. `fake-telegram --listen 127.0.0.1:8081 --bot alpha_bot --bot beta_bot=123456:beta-secret`

use std::net::SocketAddr;

use anyhow::Context as _;
use botfleet_tests::fake_telegram::{FakeTelegram, Limits};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "fake-telegram", about = "A fake Telegram Bot API server with a /sim control API (see tests/README.md)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Register a bot at start: `NAME` (a token is generated and printed) or `NAME=TOKEN`
    /// (e.g. `demo_bot=123456:demo-secret`, so scripts know the token). Repeatable.
    #[arg(long = "bot")]
    bots: Vec<String>,
    /// Switch Telegram's flood limits off (429s are then only sent when a fault asks for them).
    #[arg(long)]
    no_limits: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let fake = FakeTelegram::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let sim = fake.sim();
    if args.no_limits {
        sim.set_limits(Limits { enabled: false, ..Limits::default() }).map_err(anyhow::Error::msg)?;
    }
    for arg in &args.bots {
        let (name, token) = match arg.split_once('=') {
            Some((n, t)) => (n, Some(t)),
            None => (arg.as_str(), None),
        };
        let bot = sim.register_bot_with(name, None, token).map_err(anyhow::Error::msg)?;
        say(format_args!("bot @{} token {}", bot.username, bot.token));
    }
    say(format_args!("fake Telegram Bot API listening on {}", fake.api_url()));
    say(format_args!("  Bot API:  {}/bot<token>/<method>", fake.api_url()));
    say(format_args!("  control:  {}/sim/...  (see tests/README.md)", fake.api_url()));
    say(format_args!(
        "  try:      curl -s -XPOST {}/sim/bots -H 'content-type: application/json' -d '{{\"username\":\"my_bot\"}}'",
        fake.api_url()
    ));
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    fake.stop().await;
    Ok(())
}

/// Prints a line; a closed stdout (piped into `head`, a finished reader) must not stop the server.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
