//! gRPC for the lab: a server that answers every unary method by echoing its request, over
//! HTTP/2 without TLS (h2c, prior knowledge), and the message framing the gRPC probe shares.
//!
//! No protobuf and no generated code: the lab needs real gRPC exchanges on the wire — HTTP/2
//! `POST /package.Service/Method`, `content-type: application/grpc`, length-prefixed messages,
//! `grpc-status` trailers — for flowscope's L7 visibility and policies, not a service. The
//! server is a hyper service (see `http`), so HTTP/2 itself is hyper's.
//!
//! What it answers:
//! - `POST /<service>/<method>` over HTTP/2 with a gRPC content type: `200`, one message echoing
//!   the request's (all request messages concatenated: a unary call has one), `grpc-status: 0`.
//! - The same with a malformed body (a truncated frame, no message): trailers-only
//!   `grpc-status: 3` (INVALID_ARGUMENT); a compressed message: 12 (UNIMPLEMENTED, the server
//!   speaks no compression); over [`MAX_GRPC_MESSAGE`]: 8 (RESOURCE_EXHAUSTED); a body not
//!   received in time: 4 (DEADLINE_EXCEEDED); a path that is not `/<service>/<method>`: 12.
//! - Anything that is not gRPC (HTTP/1.x, another content type, another method): `415` with a
//!   short text body.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use super::http::{Body, text_response};

/// The largest message the server accepts, and the probe reads: gRPC's own default limit for
/// received messages.
pub const MAX_GRPC_MESSAGE: usize = 4 * 1024 * 1024;
/// Compressed flag and big-endian length, before every message.
const FRAME_HEADER: usize = 5;
/// Time allowed for a request's messages after its headers.
const GRPC_BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The content type of gRPC messages (`application/grpc+proto` and friends start with it).
pub(super) const GRPC_CONTENT_TYPE: &str = "application/grpc";

/// gRPC status codes (the `grpc-status` trailer) the lab's server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Code {
    Ok = 0,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
}

/// The name of a gRPC status code ("OK", "PERMISSION_DENIED"), as gRPC's documentation spells
/// them; `None` for codes gRPC does not define.
pub fn grpc_code_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

/// Why a request's messages cannot be answered: the status and a message for `grpc-message`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One uncompressed gRPC message, framed.
pub(super) fn encode_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(FRAME_HEADER + message.len());
    frame.put_u8(0);
    // Callers keep messages under MAX_GRPC_MESSAGE, far below u32::MAX.
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(message);
    frame.freeze()
}

/// Reads length-prefixed messages from a body as it arrives, chunk by chunk; what is buffered
/// is bounded by one frame. The messages are kept concatenated (the echo).
#[derive(Debug, Default)]
pub(super) struct Decoder {
    pending: BytesMut,
    messages: BytesMut,
    count: usize,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Status> {
        self.pending.extend_from_slice(chunk);
        while let Some(header) = self.pending.get(..FRAME_HEADER) {
            let &[flag, a, b, c, d] = header else {
                break;
            };
            let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
            match flag {
                0 => {}
                1 => {
                    return Err(Status::new(
                        Code::Unimplemented,
                        "compressed messages are not supported",
                    ));
                }
                _ => {
                    return Err(Status::new(
                        Code::InvalidArgument,
                        format!("invalid message flags {flag:#04x}"),
                    ));
                }
            }
            if length > MAX_GRPC_MESSAGE || self.messages.len() + length > MAX_GRPC_MESSAGE {
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!("messages larger than {MAX_GRPC_MESSAGE} bytes"),
                ));
            }
            if self.pending.len() < FRAME_HEADER + length {
                break;
            }
            self.pending.advance(FRAME_HEADER);
            let message = self.pending.split_to(length);
            self.messages.extend_from_slice(&message);
            self.count += 1;
        }
        Ok(())
    }

    /// The messages, once the body has ended.
    pub fn finish(self) -> Result<Bytes, Status> {
        if !self.pending.is_empty() {
            return Err(Status::new(
                Code::InvalidArgument,
                format!(
                    "the body ends inside a message frame ({} bytes left)",
                    self.pending.len()
                ),
            ));
        }
        if self.count == 0 {
            return Err(Status::new(Code::InvalidArgument, "no request message"));
        }
        Ok(self.messages.freeze())
    }
}

/// Whether a content type is gRPC's: `application/grpc`, `application/grpc+proto`,
/// `application/grpc; charset=...`.
pub(super) fn is_grpc_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix(GRPC_CONTENT_TYPE))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// `/<service>/<method>`, both non-empty.
fn is_method_path(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        })
}

/// Answers one request to a gRPC port (see the module documentation).
pub(super) async fn respond(request: Request<Incoming>, port: u16) -> Response<Body> {
    let is_grpc = request.version() == Version::HTTP_2
        && request.method() == Method::POST
        && is_grpc_content_type(request.headers());
    if !is_grpc {
        let mut response = text_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "flowscope-lab {port}: not a gRPC request (gRPC is POST over HTTP/2 with \
                 content-type {GRPC_CONTENT_TYPE})\n"
            ),
        );
        response
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static(GRPC_CONTENT_TYPE));
        return response;
    }
    if !is_method_path(request.uri().path()) {
        return trailers_only(&Status::new(
            Code::Unimplemented,
            "not a method path: /<service>/<method>",
        ));
    }
    let mut body = request.into_body();
    let mut decoder = Decoder::default();
    let read = tokio::time::timeout(GRPC_BODY_DEADLINE, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Status::new(Code::InvalidArgument, e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                decoder.push(data)?;
            }
        }
        Ok(())
    })
    .await;
    let echoed = match read {
        Err(_) => Err(Status::new(
            Code::DeadlineExceeded,
            "request messages not received in time",
        )),
        Ok(Err(status)) => Err(status),
        Ok(Ok(())) => decoder.finish(),
    };
    match echoed {
        Ok(message) => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(Code::Ok as u32));
            let body = Full::new(encode_frame(&message))
                .with_trailers(async move { Some(Ok(trailers)) })
                .boxed_unsync();
            let mut response = Response::new(body);
            grpc_headers(response.headers_mut());
            response
        }
        Err(status) => trailers_only(&status),
    }
}

fn grpc_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(GRPC_CONTENT_TYPE),
    );
    headers.insert(header::SERVER, HeaderValue::from_static("flowscope-lab"));
}

/// A gRPC error with no messages: the status in the headers, which end the stream.
fn trailers_only(status: &Status) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    let headers = response.headers_mut();
    grpc_headers(headers);
    headers.insert("grpc-status", HeaderValue::from(status.code as u32));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&status.message)) {
        headers.insert("grpc-message", message);
    }
    response
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` stays, the rest is `%XX` per
/// UTF-8 byte.
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7F).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Reverses [`percent_encode`], leniently: a `%` not followed by two hex digits is kept.
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http_body_util::Collected;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::{
        super::{App, GrpcResponse, Protocol, grpc_request, http_request, test_util::*},
        *,
    };

    #[test]
    fn decoder_reads_frames_across_chunks() {
        let mut body = encode_frame(b"hello").to_vec();
        body.extend_from_slice(&encode_frame(b""));
        body.extend_from_slice(&encode_frame(b" world"));
        // Any split of the body reads the same.
        for split in 0..body.len() {
            let mut decoder = Decoder::default();
            decoder.push(&body[..split]).unwrap();
            decoder.push(&body[split..]).unwrap();
            assert_eq!(decoder.finish().unwrap(), &b"hello world"[..]);
        }

        let decode = |body: &[u8]| {
            let mut decoder = Decoder::default();
            decoder.push(body).and_then(|()| decoder.finish())
        };
        let code = |body: &[u8]| decode(body).unwrap_err().code;
        assert_eq!(code(b""), Code::InvalidArgument);
        assert_eq!(code(b"\x00\x00\x00"), Code::InvalidArgument);
        assert_eq!(code(b"\x00\x00\x00\x00\x05abc"), Code::InvalidArgument);
        assert_eq!(code(b"\x01\x00\x00\x00\x01a"), Code::Unimplemented);
        assert_eq!(code(b"\x80\x00\x00\x00\x01a"), Code::InvalidArgument);
        // Too large is known from the header, before the message arrives.
        assert_eq!(code(b"\x00\x00\x40\x00\x01"), Code::ResourceExhausted);
        let mut decoder = Decoder::default();
        let big = encode_frame(&vec![7u8; MAX_GRPC_MESSAGE]);
        decoder.push(&big).unwrap();
        assert_eq!(
            decoder.push(&encode_frame(b"x")).unwrap_err().code,
            Code::ResourceExhausted
        );
    }

    #[test]
    fn content_types_and_paths() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc; x=y",
        ] {
            assert!(is_grpc_content_type(&headers(yes)), "{yes}");
        }
        for no in ["application/grpc-web", "application/json", "text/plain"] {
            assert!(!is_grpc_content_type(&headers(no)), "{no}");
        }
        assert!(!is_grpc_content_type(&HeaderMap::new()));
        assert!(is_method_path("/pkg.Service/Method"));
        for no in ["/", "//M", "/S/", "/S", "S/M", "/S/M/x"] {
            assert!(!is_method_path(no), "{no}");
        }
        let message = "bad: 100% \u{e9}\n";
        assert_eq!(percent_encode(message), "bad: 100%25 %C3%A9%0A");
        assert_eq!(percent_decode(&percent_encode(message)), message);
        assert_eq!(percent_decode("50%"), "50%");
    }

    /// What a hyper HTTP/2 client (prior knowledge, over real loopback TCP) gets back.
    fn call(
        addr: SocketAddr,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> (http::response::Parts, Collected<Bytes>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .header(header::CONTENT_TYPE, content_type)
                .header(header::TE, "trailers")
                .body(Full::new(body))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap())
        })
    }

    #[test]
    fn echoes_unary_calls_over_http2() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Grpc)]);
        let addr = servers.local_addrs()[0];
        let message = b"\x0a\x05hello";
        let (parts, body) = call(
            addr,
            Method::POST,
            "/lab.Echo/Say",
            "application/grpc",
            encode_frame(message),
        );
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers[header::CONTENT_TYPE], GRPC_CONTENT_TYPE);
        let trailers = body.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(body.to_bytes(), encode_frame(message));

        // Malformed: trailers-only, with the status in the headers and no body.
        let (parts, body) = call(
            addr,
            Method::POST,
            "/lab.Echo/Say",
            "application/grpc+proto",
            Bytes::from_static(b"\x00\x00\x00\x00\x09abc"),
        );
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.headers["grpc-status"], "3");
        assert!(
            percent_decode(parts.headers["grpc-message"].to_str().unwrap())
                .contains("ends inside a message frame"),
            "{parts:?}"
        );
        assert!(body.trailers().is_none());
        assert!(body.to_bytes().is_empty());

        let (parts, _) = call(
            addr,
            Method::POST,
            "/not-a-method",
            "application/grpc",
            encode_frame(b""),
        );
        assert_eq!(parts.headers["grpc-status"], "12");

        // Not gRPC: another content type or method over HTTP/2, or HTTP/1.1.
        let (parts, body) = call(
            addr,
            Method::POST,
            "/lab.Echo/Say",
            "text/plain",
            Bytes::new(),
        );
        assert_eq!(parts.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            String::from_utf8_lossy(&body.to_bytes()).contains("not a gRPC request"),
            "{parts:?}"
        );
        let (parts, _) = call(
            addr,
            Method::GET,
            "/lab.Echo/Say",
            "application/grpc",
            Bytes::new(),
        );
        assert_eq!(parts.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let result = http_request(addr, "POST", "/lab.Echo/Say", TIMEOUT);
        assert_eq!(result.detail, "415 Unsupported Media Type");
    }

    #[test]
    fn the_probe_calls_and_reports() {
        let (servers, _) = start(&[
            spec(Protocol::Tcp, App::Grpc),
            spec(Protocol::Tcp, App::Http),
        ]);
        let grpc = servers.local_addrs()[0];
        let (result, response) = grpc_request(grpc, "/lab.Echo/Say", b"ping", TIMEOUT);
        assert_eq!((result.connected, result.detail.as_str()), (true, "OK"));
        assert_ne!(result.source_port, 0);
        assert_eq!(
            response,
            Some(GrpcResponse {
                http_status: 200,
                grpc_status: Some(0),
                grpc_message: None,
                message: Some(b"ping".to_vec()),
            })
        );
        let big = vec![1u8; MAX_GRPC_MESSAGE];
        let (result, response) = grpc_request(grpc, "/lab.Echo/Say", &big, TIMEOUT);
        assert_eq!(result.detail, "OK");
        assert_eq!(response.unwrap().message.unwrap().len(), MAX_GRPC_MESSAGE);

        let (result, response) = grpc_request(grpc, "/nope", b"", TIMEOUT);
        assert_eq!(result.detail, "UNIMPLEMENTED");
        let response = response.unwrap();
        assert_eq!(response.grpc_status, Some(12));
        assert_eq!(
            response.grpc_message.as_deref(),
            Some("not a method path: /<service>/<method>")
        );
        assert_eq!(response.message, None);

        // An HTTP port answers, but not in gRPC.
        let http = servers.local_addrs()[1];
        let (result, response) = grpc_request(http, "/lab.Echo/Say", b"ping", TIMEOUT);
        assert_eq!(result.detail, "200 OK, no grpc-status");
        assert_eq!(response.unwrap().grpc_status, None);

        let (result, _) = grpc_request(closed_tcp_port(), "/lab.Echo/Say", b"", TIMEOUT);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (false, "connection refused")
        );
        let (result, _) = grpc_request(grpc, "no-slash", b"", TIMEOUT);
        assert!(result.detail.starts_with("invalid request"), "{result:?}");
    }
}
