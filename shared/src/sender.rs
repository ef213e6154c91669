//! The HTTP client that sends postbacks: one per process, rustls, keep-alive,
//! connect and total timeouts, no redirects (a 3xx is a failed attempt), at
//! most a few KiB of the answer read, and an SSRF guard.
//!
//! The guard sits in the DNS resolver, so the address checked is the address
//! connected: a name that resolves to 127.0.0.1, 10.x, 169.254.169.254 or a
//! private IPv6 address is refused, and so is a URL with such an IP literal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::lifecycle::{parse_retry_after, AttemptError, Sent};
use crate::render::Prepared;

/// How much of a partner's answer is read.
pub const MAX_RESPONSE_READ: usize = 4 * 1024;
/// How much of it is kept in the attempt log (DynamoDB bills per KiB).
pub const MAX_RESPONSE_KEPT: usize = 256;
/// Time allowed to open a connection, within the endpoint's total timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is an address postbacks must never reach: loopback, private,
/// link-local (cloud metadata), shared, unique-local, multicast, unspecified,
/// reserved, and IPv6 forms that embed such an IPv4 address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address in their last 32 bits: decided by it.
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[0..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return forbidden_v4(embedded); // IPv4-mapped ::ffff:a.b.c.d
    }
    if s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return forbidden_v4(embedded); // IPv4-translated ::ffff:0:a.b.c.d (SIIT)
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 (metadata)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
        || s[0] == 0x2002 // 6to4: embeds an IPv4 address
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF assignments 2001::/23: Teredo 2001::/32, benchmarking, ORCHID
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
}

/// The error a refused address produces, found again in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0} resolves only to private, loopback or link-local addresses")]
pub struct Blocked(pub String);

/// System DNS, with forbidden addresses removed unless allowed.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow || !is_forbidden(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The postback HTTP client.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    nowhere: bool,
}

impl Sender {
    /// Builds the client once per process. `allow_private` lifts the SSRF
    /// guard (local runner and tests only).
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("postback-service/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()?;
        Ok(Sender {
            client,
            allow_private,
            nowhere: false,
        })
    }

    /// With `nowhere`, every send is refused as blocked (`SEND_NOWHERE`).
    pub fn sending_nowhere(mut self, nowhere: bool) -> Self {
        self.nowhere = nowhere;
        self
    }

    /// Sends one prepared request within `timeout`.
    pub async fn send(&self, request: &Prepared, timeout: Duration) -> Sent {
        let started = Instant::now();
        let fail = |kind: AttemptError, detail: String| Sent {
            status: None,
            error: Some(kind),
            detail: Some(detail),
            retry_after: None,
            response: None,
            duration: started.elapsed(),
        };
        if self.nowhere {
            return fail(
                AttemptError::Blocked,
                "refused: this process sends nowhere (SEND_NOWHERE)".into(),
            );
        }
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) => u,
            Err(e) => return fail(AttemptError::Request, format!("invalid URL: {e}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        if !self.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| is_forbidden(*ip)) {
                return fail(
                    AttemptError::Blocked,
                    format!("refused: {ip} is a private, loopback or link-local address"),
                );
            }
        }
        let method = match request.method {
            crate::render::Verb::Get => reqwest::Method::GET,
            crate::render::Verb::Post => reqwest::Method::POST,
        };
        let mut builder = self.client.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return fail(classify(&e), error_chain(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        // The status line is the partner's answer: a 2xx is success even if
        // the body then stalls or breaks off (sending again would double it).
        let (body, read_error) = read_limited(response).await;
        let error = match (status, read_error) {
            (200..=299, _) => None,
            (300..=399, _) => Some(AttemptError::Redirect),
            (_, Some(kind)) => Some(kind),
            (_, None) => Some(AttemptError::HttpStatus),
        };
        Sent {
            status: Some(status),
            error,
            detail: error.map(|k| match k {
                AttemptError::Redirect => format!("answered {status}: redirects are not followed"),
                AttemptError::Timeout => "timed out while reading the answer".into(),
                _ => format!("answered {status}"),
            }),
            retry_after,
            response: (!body.is_empty()).then(|| truncate(&body, MAX_RESPONSE_KEPT)),
            duration: started.elapsed(),
        }
    }
}

/// Reads at most `MAX_RESPONSE_READ` bytes of the answer, then drops the rest.
async fn read_limited(mut response: reqwest::Response) -> (Vec<u8>, Option<AttemptError>) {
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) if e.is_timeout() => return (body, Some(AttemptError::Timeout)),
            // The status already arrived; a body cut short does not change it.
            Err(_) => break,
        }
    }
    body.truncate(MAX_RESPONSE_READ);
    (body, None)
}

/// Lossy UTF-8 of at most `max` bytes, cut on a character boundary.
pub fn truncate(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut out = text.into_owned();
    while out.len() > max {
        out.pop();
    }
    out
}

fn classify(e: &reqwest::Error) -> AttemptError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<Blocked>() {
            return AttemptError::Blocked;
        }
        source = s.source();
    }
    if e.is_timeout() {
        AttemptError::Timeout
    } else if e.is_connect() || e.is_request() {
        AttemptError::Connect
    } else {
        AttemptError::Request
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    // The URL can carry partner credentials in its query: keep only the reasons.
    parts.dedup();
    parts
        .join(": ")
        .replace(&e.url().map(|u| u.to_string()).unwrap_or_default(), "<url>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_and_metadata_addresses_are_forbidden() {
        for s in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "255.255.255.255",
            "224.0.0.1",
            // Every IPv6 form that can carry a forbidden IPv4 address.
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::1",
            "::127.0.0.1",
            "100::1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "1.1.1.1",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_forbidden(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo".as_bytes(), 2), "h");
        assert_eq!(truncate("héllo".as_bytes(), 3), "hé");
        assert_eq!(truncate(b"abc", 10), "abc");
    }
}
