//! The binary as an operator meets it: what `--help` shows, what a pod that cannot start
//! leaves behind, and how `serve` judges its Redis.

use std::process::Command;

use bot_runtime::roles::serve::{Durability, durability};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bot-runtime"))
}

#[test]
fn help_never_prints_the_values_of_secret_environment_variables() {
    for role in ["serve", "local", "migrate"] {
        let out = bin()
            .args([role, "--help"])
            .env("DATABASE_URL", "postgres://app:hunter2-db@db/botfleet")
            .env("REDIS_URL", "redis://:hunter2-redis@redis:6379")
            .env("TELEGRAM_API_URL", "https://api.telegram.org/bot123:hunter2-token/")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{role}: {help}");
        assert!(!help.contains("hunter2"), "{role} --help printed a secret:\n{help}");
    }
}

#[test]
fn a_runtime_that_cannot_start_writes_why_to_its_termination_message() {
    let dir = std::env::temp_dir().join(format!("botfleet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("termination-log");
    let out = bin()
        .args(["serve", "--config", "/nonexistent/config.yaml"])
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = std::fs::read_to_string(&log).expect("termination message written");
    assert!(message.contains("/nonexistent/config.yaml"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_requires_a_redis_that_keeps_and_never_evicts_the_hot_state() {
    assert_eq!(durability(Some("yes"), Some("noeviction")), Durability::Safe);
    let Durability::Unsafe(why) = durability(Some("no"), Some("noeviction")) else { panic!() };
    assert!(why.contains("appendonly"), "{why}");
    let Durability::Unsafe(why) = durability(Some("yes"), Some("allkeys-lru")) else { panic!() };
    assert!(why.contains("noeviction"), "{why}");
    assert_eq!(durability(None, None), Durability::Unknown, "CONFIG disabled (managed Redis): warn, not refuse");
}

#[test]
fn the_admin_role_refuses_to_start_with_a_time_zone_it_does_not_know() {
    let dir = std::env::temp_dir().join(format!("botfleet-cli-tz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("session-secret");
    std::fs::write(&secret, "a session secret of at least thirty-two bytes").unwrap();
    let out = bin()
        .args(["admin", "--session-secret-file"])
        .arg(&secret)
        // Unreachable on purpose: the zone is checked before anything is connected.
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env("ADMIN_TIME_ZONE", "Europe/Atlantis")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("ADMIN_TIME_ZONE") && said.contains("\"Europe/Atlantis\"") && said.contains("IANA"), "{said}");
    let _ = std::fs::remove_dir_all(dir);
}
