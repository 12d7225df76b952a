//! `tenantatlas serve` as a real process of the built binary, on a port the OS chooses.
//!
//! Choosing a free port first and passing it on leaves a gap in which another test process can
//! take the port (and then a test talks to someone else's server). Here the server binds
//! `127.0.0.1:0` itself and the test reads the address from its startup log line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The log line `serve` writes once it listens; the address and the instance id follow.
const LISTENING: &str = "TenantAtlas is listening on http://";

/// `tenantatlas --database-url <url> serve --addr 127.0.0.1:0` with a log filter that keeps the
/// startup line: add global and `serve` options (not `--addr` or `--log`), then hand it to
/// [`ServeProcess::start`], or run it to see it refuse.
pub fn serve_command(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantatlas"));
    command
        .args(["--database-url", database_url])
        .args([
            "--log",
            "tenantatlas=info,sqlx=warn",
            "--log-format",
            "text",
        ])
        .args(["serve", "--addr", "127.0.0.1:0"]);
    command
}

/// A running `serve` process; killed (SIGKILL) when dropped.
pub struct ServeProcess {
    child: Child,
    addr: SocketAddr,
    instance_id: String,
}

impl ServeProcess {
    /// Starts `command` (from [`serve_command`]), waits for the address it listens on and for
    /// `/healthz` to answer. Its log lines go on to this test's stderr.
    pub async fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tenantatlas serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (found, listening) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if let Some(at) = line.find(LISTENING) {
                    if let Some(found) = found.take() {
                        let _ = found.send(line[at + LISTENING.len()..].to_owned());
                    }
                }
            }
        });
        let rest = match tokio::time::timeout(Duration::from_secs(60), listening).await {
            Ok(Ok(rest)) => rest,
            Ok(Err(_)) => {
                let exit = child.wait().expect("reaped");
                panic!("serve exited before it listened: {exit}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not log its address within 60 s");
            }
        };
        let process = Self::listening(child, &rest);
        process.wait_healthy().await;
        process
    }

    /// Reads `127.0.0.1:PORT as instance "ID"` (the rest of the startup line).
    fn listening(mut child: Child, rest: &str) -> Self {
        let parsed = rest.split_once(" as instance ").and_then(|(addr, id)| {
            let addr = addr.trim().parse::<SocketAddr>().ok()?;
            let id = id.trim().strip_prefix('"')?.strip_suffix('"')?.to_owned();
            Some((addr, id))
        });
        let Some((addr, instance_id)) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("an unexpected startup line: {LISTENING}{rest}");
        };
        Self {
            child,
            addr,
            instance_id,
        }
    }

    async fn wait_healthy(&self) {
        let url = self.url("/healthz");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve on {} did not become healthy", self.addr);
    }

    /// The address the process listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The instance id the process runs as (an ended run keeps it in `lease_owner`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// SIGTERM, as a service manager stops it.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; `None` if it still runs after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no cleanup of any kind.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
