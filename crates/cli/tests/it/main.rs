//! The `permgate` binary as a user runs it: first start, restart, the CLI commands.

mod commands;
mod crash;
mod hardening;
mod operations;
mod quota_restart;
mod serve;
mod two_nodes;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_permgate");

/// A `permgate serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What it printed on stdout before it was listening (the bootstrap banner).
    pub banner: String,
    log: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits up to 30 s for a log line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => unreachable!("permgate never logged `{needle}`; it logged:\n{}", seen.join("\n")),
            }
        }
    }

    /// Every log line written so far (waiting up to `quiet` for more after the last one).
    pub fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(quiet) {
            lines.push(line);
        }
        lines
    }

    /// Sends a signal (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the log line that says the node is ready, returning the lines before it.
    pub fn wait_ready(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains("ready on http://") => return seen,
                Ok(line) => seen.push(line),
                Err(_) => unreachable!("permgate never became ready; it logged:\n{}", seen.join("\n")),
            }
        }
    }
}

/// A `permgate` command with a clean environment, run in `dir`.
pub fn permgate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// Starts `permgate serve` on an ephemeral port and waits until it is ready.
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut server = start_listening(dir, env);
    server.wait_ready();
    let mut banner = String::new();
    if let Some(stdout) = server.child.stdout.take() {
        // The banner is printed before the "ready" line, so it is complete by now; read what is
        // buffered without waiting for the process to end.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                    break;
                }
            }
        });
        while let Ok(text) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push_str(&text);
        }
    }
    server.banner = banner;
    server
}

/// Starts `permgate serve` on an ephemeral port and returns once it listens (ready or not).
pub fn start_listening(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = permgate(dir);
    cmd.arg("serve").env("PERMGATE_LISTEN", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => unreachable!("spawn {BIN}: {e}"),
    };
    let Some(stderr) = child.stderr.take() else { unreachable!("piped stderr") };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    break rest.split([';', ' ']).next().unwrap_or_default().to_owned();
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                unreachable!("permgate serve did not start listening; it logged:\n{}", seen.join("\n"))
            }
        }
    };
    Server { child, base: format!("http://{addr}"), banner: String::new(), log: rx }
}

/// One HTTP call; returns the status and the JSON body (`null` when there is none).
pub async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(serde_json::Value::Null))
        }
        Err(e) => unreachable!("{e}"),
    }
}

/// Creates a developer and an app through `base`, and signs a user token of `sub` for the app;
/// returns (developer token, app id, user token).
pub async fn developer_app(base: &str, admin: &str, secret: &str, sub: &str, scopes: &[&str]) -> (String, i64, String) {
    let body = serde_json::json!({"name": format!("dev-{sub}"), "role": "developer"});
    let (status, dev) = call(reqwest::Method::POST, format!("{base}/v1/accounts"), Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{dev}");
    let dev = dev["token"].as_str().unwrap_or_default().to_owned();
    let body = serde_json::json!({"name": "App", "company_name": "C", "category": "x"});
    let (status, app) = call(reqwest::Method::POST, format!("{base}/v1/apps"), Some(&dev), Some(body)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_i64().unwrap_or_default();
    // The app sets the consent items its users consent to (an API needing an unset one is -3).
    for scope in scopes {
        let body = serde_json::json!({"consent_type": "optional", "purpose": "test"});
        let url = format!("{base}/v1/apps/{id}/consent-items/{scope}");
        let (status, set) = call(reqwest::Method::PUT, url, Some(&dev), Some(body)).await;
        assert_eq!(status, 200, "{set}");
    }
    use permgate_core::time::Clock;
    let exp = permgate_core::time::SystemClock.now().plus_seconds(3600);
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let token = permgate_core::credential::mint_user_token(
        secret.as_bytes(),
        permgate_core::model::AppId(id),
        sub,
        &scopes,
        exp,
    )
    .unwrap_or_default();
    (dev, id, token)
}
