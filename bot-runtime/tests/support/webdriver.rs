//! A headless Chromium for the dashboard's browser test, driven over W3C WebDriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them).
//!
//! **Why our own small client, not fantoccini or playwright.** The test needs a dozen WebDriver
//! commands (open a page, find an element, type, click, run a script, take a screenshot), each
//! one JSON request; `reqwest` and `serde_json` are already in the build, so this file is the
//! whole client. fantoccini would add its own hyper client stack and cookie/url crates to every
//! 2-core build for the same calls; playwright-core would add Node and npm to `cargo test`.
//! chromedriver is Chromium's own, versioned with it by Debian, so the two always match.
//!
//! Without chromedriver the test is skipped on a developer machine and FAILS under `CI`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// W3C's key for an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key (WebDriver's key code), to submit a form from the keyboard.
pub const ENTER: &str = "\u{E007}";

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct El(pub String);

impl El {
    fn json(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

/// chromedriver (a child of this test) and one browser session in it.
pub struct Browser {
    driver: Child,
    port: u16,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
    /// The admin dashboard's origin (`http://127.0.0.1:port`).
    pub origin: String,
}

/// Where chromedriver and Chromium are (`BOTFLEET_CHROMEDRIVER`, `BOTFLEET_CHROMIUM`, else
/// Debian's paths or the PATH); None when chromedriver is missing.
fn binaries() -> Option<(PathBuf, Option<PathBuf>)> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file())).unwrap_or_default()
    };
    let driver = std::env::var_os("BOTFLEET_CHROMEDRIVER")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()))
        .or_else(|| on_path("chromedriver"))?;
    let chromium = std::env::var_os("BOTFLEET_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| ["/usr/bin/chromium", "/usr/lib/chromium/chromium"].iter().map(PathBuf::from).find(|p| p.is_file()))
        .or_else(|| on_path("chromium"));
    Some((driver, chromium))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280×900) for pages of `origin`. None (the
    /// test is skipped) when chromedriver is missing outside CI; under `CI` that panics.
    pub async fn start(origin: &str) -> Option<Browser> {
        let Some((driver_bin, chromium)) = binaries() else {
            let why = "chromedriver is missing (Debian: apt-get install chromium chromium-driver; or set BOTFLEET_CHROMEDRIVER)";
            assert!(std::env::var_os("CI").is_none(), "the browser test needs Chromium in CI: {why}");
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok().map(|r| r.status().is_success()).unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("botfleet-chromium-{}-{port}", std::process::id()));
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ],
        });
        if let Some(c) = chromium {
            options["binary"] = json!(c);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"implicit": 0, "pageLoad": 30000, "script": 30000},
        }}});
        let mut b = Browser { driver, port, base, session: String::new(), http, profile, origin: origin.trim_end_matches('/').to_string() };
        let v = b.raw(reqwest::Method::POST, "/session", Some(caps)).await;
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("a WebDriver session: {v}")).to_string();
        Some(b)
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        // WebDriver wants a JSON body on every POST, even an empty one.
        if method == reqwest::Method::POST {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body).await
    }

    /// Opens a page of the dashboard (a path) or any URL.
    pub async fn goto(&self, path_or_url: &str) {
        let url = if path_or_url.starts_with('/') { format!("{}{path_or_url}", self.origin) } else { path_or_url.to_string() };
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// The current page's path and query (the part after the origin).
    pub async fn path(&self) -> String {
        let url = self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_string();
        url.strip_prefix(&self.origin).map(str::to_string).unwrap_or(url)
    }

    /// Waits until the current path satisfies `pred` (a form's answer is a redirect the
    /// browser follows); panics with the page after `wait`.
    pub async fn wait_path(&self, what: &str, wait: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let p = self.path().await;
            if pred(&p) {
                return p;
            }
            if Instant::now() > deadline {
                panic!("{what}: the browser is at {p}:\n{}", self.text("body").await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching a CSS selector (None if there is none).
    pub async fn try_find(&self, css: &str) -> Option<El> {
        let all = self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        all.as_array()?.first()?[ELEMENT].as_str().map(|id| El(id.to_string()))
    }

    pub async fn find(&self, css: &str) -> El {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!("no element {css:?} on {}:\n{}", self.path().await, self.text("body").await),
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        let all = self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        all.as_array().map_or(0, Vec::len)
    }

    /// The form control that the label whose text starts with `label` names, inside the first
    /// element matching `scope` — found the way a screen reader finds it (`label.control`).
    pub async fn field(&self, scope: &str, label: &str) -> El {
        let script = "const scope = document.querySelector(arguments[0]); if (!scope) return null;\
                      for (const l of scope.querySelectorAll('label')) { if (l.textContent.trim().startsWith(arguments[1])) return l.control; }\
                      return null;";
        let v = self.exec(script, json!([scope, label])).await;
        match v[ELEMENT].as_str() {
            Some(id) => El(id.to_string()),
            None => panic!("no field labelled {label:?} in {scope:?} on {}:\n{}", self.path().await, self.text("body").await),
        }
    }

    /// The button of `scope` whose text starts with `text`.
    pub async fn button(&self, scope: &str, text: &str) -> El {
        let script = "const scope = document.querySelector(arguments[0]); if (!scope) return null;\
                      for (const b of scope.querySelectorAll('button')) { if (b.textContent.trim().startsWith(arguments[1])) return b; }\
                      return null;";
        let v = self.exec(script, json!([scope, text])).await;
        match v[ELEMENT].as_str() {
            Some(id) => El(id.to_string()),
            None => panic!("no button {text:?} in {scope:?} on {}:\n{}", self.path().await, self.text("body").await),
        }
    }

    /// Types into an element (clearing it first); `ENTER` at the end submits its form.
    pub async fn type_into(&self, el: &El, text: &str) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/clear", el.0), None).await;
        self.keys(el, text).await;
    }

    /// Sends keys to an element without clearing it.
    pub async fn keys(&self, el: &El, text: &str) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/value", el.0), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, el: &El) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/click", el.0), None).await;
    }

    /// Picks the option with this value in a `<select>`, as a user would (a click on it).
    pub async fn select(&self, select: &El, value: &str) {
        let opt = self
            .cmd(
                reqwest::Method::POST,
                &format!("/element/{}/elements", select.0),
                Some(json!({"using": "css selector", "value": format!("option[value='{value}']")})),
            )
            .await;
        let id = opt.as_array().and_then(|a| a.first()).and_then(|o| o[ELEMENT].as_str()).map(str::to_string);
        self.click(&El(id.unwrap_or_else(|| panic!("no option {value:?}")))).await;
    }

    /// The rendered text of the first element matching `css` ("" if none).
    pub async fn text(&self, css: &str) -> String {
        let Some(el) = self.try_find(css).await else { return String::new() };
        self.cmd(reqwest::Method::GET, &format!("/element/{}/text", el.0), None).await.as_str().unwrap_or_default().to_string()
    }

    /// A DOM property of an element (`value`, `max`, …).
    pub async fn prop(&self, el: &El, name: &str) -> Value {
        self.cmd(reqwest::Method::GET, &format!("/element/{}/property/{name}", el.0), None).await
    }

    /// Runs a script in the page (`arguments[i]` are `args`); its return value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Runs an asynchronous script: it ends by calling `arguments[arguments.length - 1](result)`.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": args}))).await
    }

    /// Resizes the window (a phone: 390×844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// A PNG of the viewport, written to `file`.
    pub async fn screenshot(&self, file: &Path) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("a base64 screenshot");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        std::fs::write(file, png).expect("write the screenshot");
    }

    /// A PNG of the whole page (beyond the viewport), through Chromium's DevTools command
    /// `Page.captureScreenshot` that chromedriver passes on.
    pub async fn full_screenshot(&self, file: &Path) {
        use base64::Engine;
        let size = self.exec("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];", json!([])).await;
        let (w, h) = (size[0].as_f64().unwrap_or(1280.0), size[1].as_f64().unwrap_or(900.0).min(10_000.0));
        let params = json!({"format": "png", "captureBeyondViewport": true, "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}});
        let v =
            self.cmd(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": "Page.captureScreenshot", "params": params}))).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap_or_default()).expect("a base64 screenshot");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        std::fs::write(file, png).expect("write the screenshot");
    }

    /// The browser's console messages since the last call (`level`, `message`): CSP
    /// violations and script errors are `SEVERE`.
    pub async fn console(&self) -> Vec<Value> {
        self.cmd(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await.as_array().cloned().unwrap_or_default()
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still ends its Chromium: a blocking DELETE of the session (chromedriver
        // quits the browser), then chromedriver itself, both by this process's handles.
        if !self.session.is_empty()
            && let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            let _ = s.write_all(req.as_bytes());
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
