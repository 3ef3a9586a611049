//! The standalone server (README's first command) and the embedded router work as documented.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::{World, embedded};
use serde_json::json;

/// Kills the server when the test ends, however it ends.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_bots_given_on_its_command_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fake-telegram"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--bot", "demo_bot=123456:demo-secret", "--bot", "other_bot"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Keep reading stdout to the end: a closed pipe would kill the server at its next print.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
            if line.contains("listening") {
                break;
            }
            seen.push(line);
        }
        seen
    })
    .await
    .unwrap();
    assert!(lines.iter().any(|l| l == "bot @demo_bot token 123456:demo-secret"), "{lines:?}");
    let generated = lines.iter().find(|l| l.starts_with("bot @other_bot token ")).unwrap().rsplit(' ').next().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let demo = RawBot::new(&base, "123456:demo-secret");
    assert_eq!(demo.call("getMe", json!({})).await.unwrap()["username"], "demo_bot");
    assert_eq!(RawBot::new(&base, &generated).call("getMe", json!({})).await.unwrap()["username"], "other_bot");
    let http = reqwest::Client::new();
    http.post(format!("{base}/sim/users")).json(&json!({"id": 1001, "first_name": "Ann"})).send().await.unwrap();
    http.post(format!("{base}/sim/send")).json(&json!({"bot": "demo_bot", "user": 1001, "text": "/start"})).send().await.unwrap();
    let updates = demo.call("getUpdates", json!({})).await.unwrap();
    assert_eq!(updates[0]["message"]["text"], "/start");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn the_embedded_router_is_driven_by_its_sim_handle() {
    let (router, sim) = embedded(World::default());
    let app = axum::Router::new().nest("/telegram-api", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/telegram-api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let bot = sim.register_bot("local_bot").unwrap();
    let user = sim.user("Ann", None).unwrap();
    sim.send_text("local_bot", user.id, "/start", None).unwrap();
    let api = RawBot::new(&base, &bot.token);
    api.call("sendMessage", json!({"chat_id": user.id, "text": "welcome"})).await.unwrap();
    let inbox = sim.inbox(user.id, None, 0).unwrap();
    assert_eq!(inbox.len(), 1);
}
