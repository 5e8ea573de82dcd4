//! A small W3C WebDriver client for end-to-end tests of the console: it starts Debian's
//! `chromedriver` with a headless Chromium, and speaks the few commands the tests need (go to,
//! find with waiting, click, type, read text, screenshots, the browser console's log).
//! [`Browser::start`] returns `None` when chromedriver or Chromium is not installed, so that a
//! machine without them skips the tests with a notice (`.ci/run` installs both).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a find or a text wait tries before failing the test.
const WAIT: Duration = Duration::from_secs(10);

/// A headless Chromium driven through chromedriver; both stop when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    /// Where screenshots go: `target/e2e-artifacts/<label>/`.
    pub artifacts: PathBuf,
    shots: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session so that chromedriver closes Chromium (killing chromedriver alone would
        // leave the browser running), also when the test failed. Plain blocking HTTP:
        // no runtime is at hand in `drop`.
        if let Some(rest) = self.session.strip_prefix("http://")
            && let Some((host, path)) = rest.split_once('/')
            && let Ok(mut conn) = std::net::TcpStream::connect(host)
        {
            use std::io::{Read, Write};
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                conn,
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = conn.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_binary(candidates: &[&str]) -> Option<String> {
    candidates.iter().find(|p| std::path::Path::new(p).exists()).map(|p| (*p).to_owned())
}

/// An element reference.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a browser session, or `None` (with a notice) when either is
    /// missing.
    pub async fn start(label: &str) -> Option<Browser> {
        let Some(driver_bin) = find_binary(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]) else {
            eprintln!("skipping: chromedriver is not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let Some(chromium) = find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"])
        else {
            eprintln!("skipping: Chromium is not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = crate::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| unreachable!("starting chromedriver: {e}"));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            let ready = match ready {
                Some(r) => r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == true),
                None => false,
            };
            if ready {
                break;
            }
            assert!(started.elapsed() < WAIT, "chromedriver did not become ready on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // No background networking: on a machine without network, Chromium's own
                // connections (updates, sync, QUIC probes) fail and slow every start.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1600", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap_or_else(|e| unreachable!("new session: {e}"))
            .json()
            .await
            .unwrap_or_default();
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| unreachable!("no session: {created}"));
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts").join(label);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap_or_else(|e| unreachable!("{}: {e}", artifacts.display()));
        // Canonical: Chromium refuses file paths with `..` for uploads.
        let artifacts = artifacts.canonicalize().unwrap_or(artifacts);
        Some(Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            artifacts,
            shots: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| unreachable!("webdriver {path}: {e}"));
        let v: Value = resp.json().await.unwrap_or_default();
        let error = v["value"]["error"].as_str().unwrap_or_default();
        if !error.is_empty() && error != "no such element" {
            unreachable!("webdriver {path}: {error}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn try_find(&self, using: &str, value: &str) -> Option<Element> {
        let v = self.command(reqwest::Method::POST, "/element", Some(json!({"using": using, "value": value}))).await;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    async fn find_by(&self, using: &str, value: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.try_find(using, value).await {
                return e;
            }
            if started.elapsed() > WAIT {
                let body = self.text().await;
                self.screenshot("not-found").await;
                unreachable!("no element {using} `{value}` after {WAIT:?}; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching a CSS selector, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        self.find_by("css selector", css).await
    }

    /// The first element matching an XPath expression, waiting for it.
    pub async fn find_xpath(&self, xpath: &str) -> Element {
        self.find_by("xpath", xpath).await
    }

    /// The first button whose text is `text`, waiting for it.
    pub async fn button(&self, text: &str) -> Element {
        self.find_by("xpath", &format!("//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']")).await
    }

    pub async fn click(&self, e: &Element) {
        self.command(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await;
    }

    /// Types into the field found by `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.type_into(&e, text).await;
    }

    /// Clicks the button (or link) whose text is `text`.
    pub async fn press(&self, text: &str) {
        let e = self.button(text).await;
        self.click(&e).await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        let body = self.try_find("css selector", "body").await;
        match body {
            Some(b) => self
                .command(reqwest::Method::GET, &format!("/element/{}/text", b.0), None)
                .await
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => String::new(),
        }
    }

    /// Waits until the page shows `needle`.
    pub async fn wait_for(&self, needle: &str) {
        self.wait_for_any(&[needle]).await;
    }

    /// Waits until the page shows one of `needles`; returns the first one shown.
    pub async fn wait_for_any<'n>(&self, needles: &[&'n str]) -> &'n str {
        let needle = needles.join("` or `");
        let started = Instant::now();
        loop {
            let text = self.text().await;
            if let Some(found) = needles.iter().find(|n| text.contains(*n)) {
                return found;
            }
            if started.elapsed() > WAIT {
                self.screenshot("missing-text").await;
                unreachable!("the page never showed `{needle}`; it says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot as `NN-name.png` in [`Browser::artifacts`].
    pub async fn screenshot(&self, name: &str) {
        let v = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let n = self.shots.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(b64) = v.as_str()
            && let Some(png) = base64_decode(b64)
        {
            let _ = std::fs::write(self.artifacts.join(format!("{n:02}-{name}.png")), png);
        }
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Runs `script` in the page, which ends by calling its last argument with the result.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": []}))).await
    }

    /// The WCAG 2 A and AA violations axe-core finds on the current page, as `rule: nodes`
    /// lines; `None` when axe-core is not installed (`.ci/run` installs it from npm into
    /// `target/npm`).
    pub async fn accessibility_violations(&self) -> Option<Vec<String>> {
        let axe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/npm/node_modules/axe-core/axe.min.js");
        let Ok(source) = std::fs::read_to_string(&axe) else {
            eprintln!(
                "skipping the accessibility check: {} is not installed (npm install --prefix target/npm axe-core@4)",
                axe.display()
            );
            return None;
        };
        self.eval(&source).await;
        let result = self
            .eval_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] })
                   .then((r) => done(r.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`)))
                   .catch((e) => done([`axe failed: ${e}`]));",
            )
            .await;
        Some(
            result
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        )
    }

    /// The browser console's messages at level SEVERE since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self.command(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .filter_map(|e| e["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.push(a);
        if chunk.len() > 2 {
            out.push(b);
        }
        if chunk.len() > 3 {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_padded_and_unpadded_input() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("a$==").as_deref(), None);
    }
}
