//! The runtime picks up a new resolved configuration without a restart, and never a broken one.

use std::path::PathBuf;
use std::time::Duration;

use bot_runtime::config::{ConfigError, load, watch};
use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::resolve::resolve;
use botfleet_crds::resolved::ResolvedBotConfig;
use botfleet_crds::vip_plan::VipPlan;

fn sample_config(price: u32) -> ResolvedBotConfig {
    let bot: BotInstance = serde_yaml::from_str(
        "apiVersion: botfleet.io/v1alpha1\nkind: BotInstance\nmetadata: {name: alpha, namespace: demo}\nspec: {tokenSecretRef: {name: t}, admins: {telegramIds: [1]}}",
    )
    .unwrap();
    let plan: VipPlan = serde_yaml::from_str(&format!(
        "apiVersion: botfleet.io/v1alpha1\nkind: VipPlan\nmetadata: {{name: week, namespace: demo}}\nspec: {{title: Week, description: d, priceStars: {price}, grants: {{vipDays: 7}}}}"
    ))
    .unwrap();
    resolve(&bot, &[plan], &[], &[], "2026-01-01T00:00:00Z".parse().unwrap()).unwrap().config
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("botfleet-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("config.yaml")
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_changed_price_is_picked_up_without_a_restart_and_a_broken_file_is_ignored() {
    let path = temp_file("reload");
    std::fs::write(&path, serde_yaml::to_string(&sample_config(250)).unwrap()).unwrap();
    let (live, task) = watch(path.clone(), Duration::from_millis(20)).await.unwrap();
    assert_eq!(live.current().plans[0].price_stars, 250);

    std::fs::write(&path, serde_yaml::to_string(&sample_config(199)).unwrap()).unwrap();
    assert!(eventually(|| live.current().plans[0].price_stars == 199).await, "new price seen");

    std::fs::write(&path, "version: 1\nbot: [this is not a config").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(live.current().plans[0].price_stars, 199, "a broken file changes nothing");

    // Kubernetes swaps the file under a symlink; a rename does the same here.
    let next = path.with_extension("next");
    std::fs::write(&next, serde_yaml::to_string(&sample_config(300)).unwrap()).unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert!(eventually(|| live.current().plans[0].price_stars == 300).await, "swapped file seen");
    task.abort();
}

#[tokio::test]
async fn a_missing_or_wrong_config_fails_at_start_with_a_clear_error() {
    let missing = temp_file("missing").with_file_name("nope.yaml");
    assert!(matches!(load(&missing).await, Err(ConfigError::Read { .. })));
    let path = temp_file("version");
    let mut config = serde_yaml::to_value(sample_config(1)).unwrap();
    config["version"] = 99.into();
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let err = load(&path).await.unwrap_err();
    assert_eq!(err, ConfigError::Version { path: path.clone(), found: 99 });
    assert!(err.to_string().contains("reads version 1"));
}
