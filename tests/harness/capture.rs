//! The service's log lines, captured in memory: the test's process installs a
//! subscriber that writes into a buffer (nextest runs each test in its own
//! process, so it is the only one).

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged since the capture started.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// JSON lines, as in Lambda, at `filter` (e.g. `info`).
    pub fn json(filter: &str) -> Captured {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    /// Readable lines without colours, at `filter`.
    pub fn text(filter: &str) -> Captured {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        logs
    }

    /// The output so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The output's JSON lines (anything else is skipped).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
