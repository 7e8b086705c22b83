//! L7 HTTP visibility: the start of an HTTP/1.x request or response head the datapath copied
//! (an `L7Event` on one of the HTTP visibility ports) becomes Hubble's `Layer7.http` record:
//! method, URL (Host and path), protocol, and for a response its status code and the latency
//! since its request. Headers and bodies are not kept.

use std::collections::{HashMap, VecDeque};

use flowscope_model::flow::Http;

/// Requests waiting for their response, at most, over all connections; beyond, new requests
/// are not remembered (their responses then carry no latency nor request line).
const PENDING_MAX: usize = 16_384;
/// Pipelined requests remembered per connection.
const PENDING_PER_CONNECTION: usize = 64;

/// One parsed HTTP head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMessage {
    pub response: bool,
    /// For a response: the time since its request, when that was seen (else 0).
    pub latency_ns: u64,
    pub http: Http,
}

/// The fields Hubble reports of an HTTP/1.x head, or None for what is not one.
pub fn parse(payload: &[u8]) -> Option<HttpMessage> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    if payload.starts_with(b"HTTP/") {
        let mut r = httparse::Response::new(&mut headers);
        // A head cut at the copy limit still has its status line.
        let _ = r.parse(payload);
        let code = r.code?;
        return Some(HttpMessage {
            response: true,
            latency_ns: 0,
            http: Http {
                code: u32::from(code),
                protocol: protocol(r.version?),
                ..Http::default()
            },
        });
    }
    let mut r = httparse::Request::new(&mut headers);
    let _ = r.parse(payload);
    let (method, path, version) = (r.method?, r.path?, r.version?);
    let host = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let url = match host {
        Some(host) if path.starts_with('/') => format!("http://{host}{path}"),
        _ => path.to_string(),
    };
    Some(HttpMessage {
        response: false,
        latency_ns: 0,
        http: Http {
            method: method.to_string(),
            url,
            protocol: protocol(version),
            ..Http::default()
        },
    })
}

fn protocol(minor: u8) -> String {
    format!("HTTP/1.{minor}")
}

/// A connection as seen at one interface: the interface, the client's address and port.
pub type ConnKey = (u32, [u8; 16], u16);

/// Requests seen, to give responses their request line and latency (HTTP/1.x answers in
/// order).
#[derive(Default)]
pub struct Pending {
    requests: HashMap<ConnKey, VecDeque<(i64, String, String)>>,
    total: usize,
}

impl Pending {
    pub fn request(&mut self, key: ConnKey, time_ns: i64, http: &Http) {
        if self.total >= PENDING_MAX {
            // Connections whose responses never came (closed, or not seen) go first.
            self.requests
                .retain(|_, q| q.back().is_some_and(|r| r.0 > time_ns - 60_000_000_000));
            self.total = self.requests.values().map(VecDeque::len).sum();
            if self.total >= PENDING_MAX {
                return;
            }
        }
        let queue = self.requests.entry(key).or_default();
        if queue.len() >= PENDING_PER_CONNECTION {
            return;
        }
        queue.push_back((time_ns, http.method.clone(), http.url.clone()));
        self.total += 1;
    }

    /// Completes `message` (a response on `key` at `time_ns`) with its request's method, URL
    /// and the latency, once.
    pub fn response(&mut self, key: &ConnKey, time_ns: i64, message: &mut HttpMessage) {
        let Some(queue) = self.requests.get_mut(key) else {
            return;
        };
        if let Some((t, method, url)) = queue.pop_front() {
            self.total -= 1;
            message.latency_ns = time_ns.saturating_sub(t).max(0) as u64;
            message.http.method = method;
            message.http.url = url;
        }
        if queue.is_empty() {
            self.requests.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_give_hubbles_fields() {
        let req = parse(
            b"POST /api/orders?id=7 HTTP/1.1\r\nHost: my-api:8080\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert!(!req.response);
        assert_eq!(req.http.method, "POST");
        assert_eq!(req.http.url, "http://my-api:8080/api/orders?id=7");
        assert_eq!(req.http.protocol, "HTTP/1.1");
        assert!(req.http.headers.is_empty(), "headers are not kept");

        // A head cut by the copy limit still gives its first line.
        let cut = parse(b"GET /x HTTP/1.0\r\nHost: a\r\nUser-Ag").unwrap();
        assert_eq!(cut.http.url, "http://a/x");
        assert_eq!(cut.http.protocol, "HTTP/1.0");

        let mut res = parse(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(res.response);
        assert_eq!(res.http.code, 403);
        let mut p = Pending::default();
        let key = (4, [1; 16], 40000);
        p.request(key, 1_000_000, &req.http);
        p.response(&key, 4_000_000, &mut res);
        assert_eq!(res.latency_ns, 3_000_000);
        assert_eq!(res.http.method, "POST");
        assert_eq!(res.http.url, "http://my-api:8080/api/orders?id=7");
        assert!(p.requests.is_empty() && p.total == 0);
    }

    #[test]
    fn what_is_not_http_is_not_parsed() {
        assert!(parse(b"\x16\x03\x01\x02\x00").is_none());
        assert!(parse(b"HELLO world").is_none());
    }
}
