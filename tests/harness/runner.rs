//! The local runner as a person runs it: the `postback-local` binary in its
//! own process, provisioning its own table and queues from template.yaml on
//! the stand-ins, with its stdout (logs and EMF metrics) captured line by line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{unique_prefix, ADMIN_KEY};

/// A running `postback-local`; killed when dropped.
pub struct Runner {
    child: Child,
    pub base: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// `target/debug/postback-local`, beside this test binary's `deps/` folder.
/// `make test` builds it before the tests run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p postback-local` first (make test does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Runner {
    /// Starts the runner with `--provision` on a fresh stack prefix, plus
    /// `env`, and waits until `/health` answers.
    pub async fn start(env: &[(&str, &str)]) -> Runner {
        let port = free_port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = Command::new(binary("postback-local"));
        command
            .arg("--provision")
            .current_dir(&root)
            .env("PORT", port.to_string())
            .env("ADMIN_API_KEY", ADMIN_KEY)
            .env("STACK_PREFIX", unique_prefix())
            .env("RUST_LOG", "info")
            .env("RECONCILE_SECONDS", "5")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("postback-local starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().expect("piped stdout");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let runner = Runner {
            child,
            base,
            stdout,
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(runner.url("/health")).send().await {
                if r.status().is_success() {
                    return runner;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "postback-local did not answer /health in 30 s; its output:\n{}",
            runner.stdout().join("\n")
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
