//! `bot-runtime`: one binary, several roles (serve, admin, migrate, local). The roles are
//! built in issue 3; until then the binary says so instead of pretending to run a bot.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "bot-runtime", version, about = "BotFleet bot runtime (roles serve/admin/migrate/local are being built; see README)")]
struct Args {}

fn main() -> std::process::ExitCode {
    let _ = Args::parse();
    eprintln!("bot-runtime: no role is implemented yet. To try BotFleet today, run the fake Telegram (see README.md).");
    std::process::ExitCode::from(2)
}
