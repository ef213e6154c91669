//! A real HTTP receiver on 127.0.0.1 that records every request and answers
//! from a script: one reply per request in order, the last one repeated.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn query(&self) -> Vec<(String, String)> {
        let q = self.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    StatusWithHeader(u16, &'static str, &'static str),
    /// Waits, then answers 200.
    Delay(Duration),
    /// Waits, then answers with this status.
    DelayThen(Duration, u16),
}

#[derive(Clone)]
struct Shared {
    script: Arc<Vec<Reply>>,
    seen: Arc<Mutex<Vec<Captured>>>,
}

/// A running receiver.
pub struct Receiver {
    pub port: u16,
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Receiver {
    /// Starts a receiver answering from `script`.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Shared {
            script: Arc::new(script),
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { port, seen }
    }

    /// A receiver that always answers 200.
    pub async fn ok() -> Receiver {
        Self::start(vec![Reply::Status(200)]).await
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path_and_query)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut seen = s.seen.lock().unwrap();
        seen.push(Captured {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        seen.len()
    };
    let reply = s
        .script
        .get(n - 1)
        .or(s.script.last())
        .cloned()
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => {
            (StatusCode::from_u16(code).unwrap(), format!("reply {n}")).into_response()
        }
        Reply::StatusWithHeader(code, name, value) => (
            StatusCode::from_u16(code).unwrap(),
            [(name, value)],
            format!("reply {n}"),
        )
            .into_response(),
        Reply::Delay(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
        Reply::DelayThen(d, code) => {
            tokio::time::sleep(d).await;
            (StatusCode::from_u16(code).unwrap(), "late").into_response()
        }
    }
}
