//! `bot-runtime local`: the manifests a platform team applies are what the local run serves,
//! and the README's first command works (here with a short simulation so it ends by itself).

use std::process::Command;

use bot_runtime::roles::local::{read_manifests, resolve_all};

fn repo_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[test]
fn the_sample_manifests_resolve_to_two_bots_in_one_pool() {
    let m = read_manifests(&repo_config()).expect("manifests");
    let configs = resolve_all(&m).expect("resolve");
    let names: Vec<_> = configs.iter().map(|c| c.bot.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(configs.iter().all(|c| c.bot.pool == configs[0].bot.pool));
    assert!(!configs[0].plans.is_empty(), "plans select the bots");
}

#[test]
fn a_malformed_manifest_is_refused_with_its_file_and_kind() {
    let dir = std::env::temp_dir().join(format!("botfleet-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.yaml"), "apiVersion: botfleet.io/v1alpha1\nkind: BotInstance\nmetadata: {name: x}\nspec: {pool: 3}\n")
        .unwrap();
    let err = match read_manifests(&dir) {
        Ok(_) => panic!("a BotInstance without a spec is accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("bad.yaml") && err.contains("BotInstance"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn local_with_a_simulation_runs_the_sample_fleet_end_to_end() {
    let out = Command::new(env!("CARGO_BIN_EXE_bot-runtime"))
        .args(["local", "--manifests"])
        .arg(repo_config())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--fake-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--simulate",
            "10",
            "--messages",
            "2",
        ])
        .args(["--think-ms", "300", "--buyers", "20"])
        .env("RUST_LOG", "warn")
        .env_remove("BOT_TOKEN_ALPHA")
        .env_remove("BOT_TOKEN_BETA")
        .output()
        .expect("run bot-runtime local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("10 (10 onboarded)"), "{stdout}");
    assert!(stdout.contains("matches:            5"), "{stdout}");
    // Two buyers in ten (the sample plans sell with Telegram Stars), each locking its chat
    // (or finding it locked already, when the two buyers met).
    assert!(stdout.contains("purchases:          2 paid, 0 declined;"), "{stdout}");
    assert!(stdout.contains("1 chats locked") || stdout.contains("2 chats locked"), "{stdout}");
    assert!(stdout.contains("of which the runtime's handling (ms): p50"), "the runtime's share apart: {stdout}");
    assert!(stdout.contains("errors:             none"), "{stdout}");
}
