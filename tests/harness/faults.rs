//! Fault injection: a TCP proxy in front of a stand-in that can pass, refuse
//! or hang connections (existing ones included, so pooled keep-alive
//! connections are cut too), and a raw HTTP receiver that can answer, fail,
//! hang or reset the connection, recording what it answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// `host:port` of a stand-in's URL (what a [`Proxy`] forwards to).
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Close every connection at once (the peer sees a reset or EOF).
    Refuse,
    /// Keep connections open and forward nothing.
    Hang,
    /// Answer every request as AWS answers a call the IAM policy does not
    /// allow: 400 `AccessDeniedException` (JSON protocol, as DynamoDB and
    /// SQS speak it), nothing forwarded.
    Deny,
    /// Answer the requests of one action (`X-Amz-Target`, e.g.
    /// `BatchGetItem`) as [`Mode::Deny`] does, and pass every other one.
    DenyAction(&'static str),
}

/// The message of the injected AccessDenied, as IAM words it.
/// It goes on with the action (`dynamodb:GetItem`, from the request's `X-Amz-Target`).
pub const DENIED_MESSAGE: &str = "User: arn:aws:sts::123456789012:assumed-role/postback-ApiFunctionRole/postback-api is not authorized to perform:";

/// A fault-injecting TCP proxy on 127.0.0.1.
pub struct Proxy {
    pub url: String,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    /// Proxies to `target` (host:port).
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let rx = rx.clone();
                let target = target.clone();
                tokio::spawn(async move { serve(client, target, rx).await });
            }
        });
        Proxy { url, mode: tx }
    }

    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }
}

async fn serve(mut client: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Refuse => return,
            Mode::Hang => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Pass => break,
            Mode::Deny => return deny(client, None, mode).await,
            Mode::DenyAction(action) => {
                return deny(client, Some((action, target.as_str())), mode).await
            }
        }
    }
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let mut a = [0u8; 16 * 1024];
    let mut b = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = cr.read(&mut a) => match n { Ok(0) | Err(_) => return, Ok(n) => if uw.write_all(&a[..n]).await.is_err() { return } },
            n = ur.read(&mut b) => match n { Ok(0) | Err(_) => return, Ok(n) => if cw.write_all(&b[..n]).await.is_err() { return } },
            changed = mode.changed() => {
                if changed.is_err() { return; }
                let now = *mode.borrow();
                match now {
                    Mode::Pass => {}
                    // A live connection is cut (in Deny mode the next one is
                    // answered AccessDenied); in Hang mode it is held open, silent.
                    Mode::Refuse | Mode::Deny | Mode::DenyAction(_) => return,
                    Mode::Hang => {
                        while *mode.borrow() == Mode::Hang {
                            if mode.changed().await.is_err() { return; }
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Reads each HTTP/1.1 request on the connection and answers it with an
/// AccessDenied error; with `only` (an action and the upstream), the
/// requests of other actions are passed to the upstream, one connection
/// each (`connection: close`), and this one closes after the answer.
async fn deny(
    mut client: TcpStream,
    only: Option<(&'static str, &str)>,
    mode: watch::Receiver<Mode>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8 * 1024];
    loop {
        // Head, then as many body bytes as Content-Length says.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let raw_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let head = raw_head.to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        let expected = match only {
            None => Mode::Deny,
            Some((action, _)) => Mode::DenyAction(action),
        };
        if *mode.borrow() != expected {
            // The grant is back: close, so the client reconnects through.
            return;
        }
        let action = head
            .lines()
            .position(|l| l.starts_with("x-amz-target:"))
            .and_then(|i| raw_head.lines().nth(i))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, t)| t.trim().rsplit('.').next())
            .unwrap_or("unknown")
            .to_string();
        if let Some((_, upstream)) = only.filter(|(denied, _)| *denied != action) {
            let Ok(mut up) = TcpStream::connect(upstream).await else {
                return;
            };
            let mut forwarded = raw_head[..head_end - 2].to_string();
            forwarded.push_str("connection: close\r\n\r\n");
            if up.write_all(forwarded.as_bytes()).await.is_err()
                || up.write_all(&request[head_end..]).await.is_err()
            {
                return;
            }
            let mut answer = Vec::new();
            if up.read_to_end(&mut answer).await.is_err() {
                return;
            }
            let _ = client.write_all(&answer).await;
            return;
        }
        let service = if head.contains("amazonsqs") {
            "sqs"
        } else {
            "dynamodb"
        };
        let body = serde_json::json!({
            "__type": "com.amazon.coral.service#AccessDeniedException",
            "message": format!("{DENIED_MESSAGE} {service}:{action} on resource: arn:aws:{service}:us-east-1:123456789012:postback because no identity-based policy allows the {service}:{action} action"),
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: denied-0001\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if client.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// How the fault receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Fail,
    /// Never answer (the sender times out).
    Hang,
    /// Close the connection with a TCP reset, no answer.
    Reset,
    /// Send `200 OK` and the start of a body, then stall without finishing it.
    OkThenStall,
}

/// One request the fault receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub idempotency_key: String,
    pub answer: Answer,
}

/// A raw HTTP/1.1 receiver whose answers come from a function of the request number.
pub struct FaultReceiver {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultReceiver {
    pub async fn start(script: fn(usize) -> Answer) -> FaultReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move { handle(stream, log, script).await });
            }
        });
        FaultReceiver { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>, script: fn(usize) -> Answer) {
    loop {
        // Read one request: headers, then Content-Length bytes of body.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}: "))
                    .map(|v| v.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = {
            let mut log = log.lock().unwrap();
            let answer = script(log.len());
            log.push(Seen {
                idempotency_key: header("idempotency-key").unwrap_or_default(),
                answer,
            });
            answer
        };
        match answer {
            Answer::Ok | Answer::Fail => {
                let status = if answer == Answer::Ok {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Answer::OkThenStall => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\naccepted";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Answer::Reset => {
                // SO_LINGER 0: the close sends a TCP reset instead of a FIN.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}
