//! The `permgate` binary as a user runs it: first start, restart, the CLI commands.

mod commands;
mod serve;

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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `permgate` command with a clean environment, run in `dir`.
pub fn permgate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// Starts `permgate serve` on an ephemeral port and waits for its "listening" log line.
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = permgate(dir);
    cmd.arg("serve").env("PERMGATE_LISTEN", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => unreachable!("spawn {BIN}: {e}"),
    };
    let (Some(stderr), Some(mut stdout)) = (child.stderr.take(), child.stdout.take()) else {
        unreachable!("piped stdio")
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            unreachable!("permgate serve did not start listening; stdout: {out}")
        }
    };
    // The banner is printed before the listener binds, so it is complete by now; read what is
    // buffered without waiting for EOF.
    let (btx, brx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut acc = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            acc.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = btx.send(acc.clone());
        }
    });
    let mut banner = String::new();
    while let Ok(text) = brx.recv_timeout(Duration::from_millis(300)) {
        banner = text;
    }
    Server { child, base: format!("http://{addr}"), banner }
}
