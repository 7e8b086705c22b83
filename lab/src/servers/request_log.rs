//! The request log: one line per HTTP or gRPC request a pod's servers received, so a test can
//! prove what reached a server — and that a request a policy denied never did.
//!
//! A line is written, and on its way to the file, before the request is answered: a client
//! that has its response can read the log and find the request in it. Lines are appended with
//! one `write` each on a file opened with `O_APPEND`, behind a mutex, so lines never interleave.
//! The file is bounded ([`MAX_REQUEST_LOG`]): past that, one last line says the log is full and
//! nothing more is written.
//!
//! The format, one request per line, fields separated by tabs:
//!
//! ```text
//! 2025-06-01T12:00:00.123Z  198.18.1.1:40312  HTTP/1.1  GET  /api/items?id=7  198.18.1.2:8080  http
//! ```
//!
//! time (RFC 3339, UTC, milliseconds), client address:port, HTTP version (`HTTP/1.0`,
//! `HTTP/1.1`, `HTTP/2`), method, request target (path and query; for gRPC the method path
//! `/package.Service/Method`), the server's address:port, and the server's app (`http` or
//! `grpc`). Lines starting with `#` are notes, not requests.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Mutex, PoisonError},
    time::SystemTime,
};

use super::App;

/// The most bytes a request log grows to: hundreds of thousands of requests, far more than any
/// test or demo session sends, and still small for /run, a memory file system.
pub const MAX_REQUEST_LOG: u64 = 16 * 1024 * 1024;

/// The last line of a full log. Fixed, so a log reopened later can tell it is full.
const FULL_NOTE: &str = "# request log full: later requests are not logged\n";

/// A pod's request log, shared by all its servers. Cheap to write: one formatted line and one
/// `write` per request, under a mutex held for just that.
#[derive(Debug)]
pub struct RequestLog {
    path: PathBuf,
    limit: u64,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    /// `None` once the log is full (or a write failed: the log is best effort and never holds
    /// up a request).
    file: Option<File>,
    written: u64,
    /// The line being written, kept to reuse its allocation.
    line: String,
}

impl RequestLog {
    /// Opens (or creates) the log at `path` for appending; what it holds is kept.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with_limit(path, MAX_REQUEST_LOG)
    }

    /// [`RequestLog::open`] with a size other than [`MAX_REQUEST_LOG`].
    pub fn open_with_limit(path: impl AsRef<Path>, limit: u64) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("request log {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(context)?;
        let written = file.metadata().map_err(context)?.len();
        let full = ends_with_full_note(&mut file, written).map_err(context)?;
        Ok(Self {
            path,
            limit,
            state: Mutex::new(LogState {
                file: (!full).then_some(file),
                written,
                line: String::with_capacity(256),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one request, now. Failures are dropped: a full disk must not fail the request.
    pub(super) fn record(&self, request: &Entry<'_>) {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let LogState {
            file: slot,
            written,
            line,
        } = &mut *state;
        let Some(file) = slot else {
            return;
        };
        line.clear();
        request.write_line(line, jiff::Timestamp::now());
        let fits = *written + line.len() as u64 + FULL_NOTE.len() as u64 <= self.limit;
        let bytes = if fits {
            line.as_bytes()
        } else {
            FULL_NOTE.as_bytes()
        };
        match file.write_all(bytes) {
            Ok(()) if fits => *written += bytes.len() as u64,
            _ => *slot = None,
        }
    }
}

/// Whether the file's last line is [`FULL_NOTE`].
fn ends_with_full_note(file: &mut File, len: u64) -> io::Result<bool> {
    let note = FULL_NOTE.len() as u64;
    if len < note {
        return Ok(false);
    }
    let mut tail = vec![0u8; FULL_NOTE.len()];
    file.seek(SeekFrom::Start(len - note))?;
    file.read_exact(&mut tail)?;
    Ok(tail == FULL_NOTE.as_bytes())
}

/// A request as the servers record it, borrowed from the request.
pub(super) struct Entry<'a> {
    pub client: SocketAddr,
    pub version: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub server: SocketAddr,
    pub app: App,
}

impl Entry<'_> {
    fn write_line(&self, line: &mut String, time: jiff::Timestamp) {
        use fmt::Write as _;
        // Formatting into a String cannot fail.
        let _ = write!(line, "{time:.3}\t{}\t", self.client);
        push_field(line, self.version);
        line.push('\t');
        push_field(line, self.method);
        line.push('\t');
        push_field(line, self.target);
        let _ = writeln!(line, "\t{}\t{}", self.server, self.app);
    }
}

/// Appends `field`, with any control character (a tab or newline would break the line)
/// replaced by `?`. hyper has already refused such bytes in methods and targets; this keeps
/// the format safe whatever a caller passes.
fn push_field(line: &mut String, field: &str) {
    line.extend(field.chars().map(|c| if c.is_control() { '?' } else { c }));
}

/// One line of a request log, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When the server received it (to the millisecond).
    pub time: SystemTime,
    /// The client's address and port: the source of the connection the request came on.
    pub client: SocketAddr,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: String,
    pub method: String,
    /// Path and query, as sent; for gRPC, `/package.Service/Method`.
    pub target: String,
    /// The server's address and port the request arrived at.
    pub server: SocketAddr,
    /// [`App::Http`] or [`App::Grpc`]: which server received it.
    pub app: App,
}

impl FromStr for LoggedRequest {
    type Err = String;

    /// Reads one line (without its newline).
    fn from_str(line: &str) -> Result<Self, String> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [time, client, version, method, target, server, app] = fields[..] else {
            return Err(format!("{} fields, not 7", fields.len()));
        };
        let time: jiff::Timestamp = time.parse().map_err(|e| format!("time {time:?}: {e}"))?;
        let app = match app {
            "http" => App::Http,
            "grpc" => App::Grpc,
            _ => return Err(format!("app {app:?} is not http or grpc")),
        };
        Ok(Self {
            time: SystemTime::try_from(time).map_err(|e| format!("time {time}: {e}"))?,
            client: client
                .parse()
                .map_err(|_| format!("client {client:?} is not address:port"))?,
            version: version.to_owned(),
            method: method.to_owned(),
            target: target.to_owned(),
            server: server
                .parse()
                .map_err(|_| format!("server {server:?} is not address:port"))?,
            app,
        })
    }
}

/// Reads a request log: every request in it, oldest first. Notes (lines starting with `#`,
/// such as the one saying the log is full) are skipped, and so is a last line still being
/// written (without its newline). A line that is not a request is an error naming its number.
pub fn read_request_log(path: impl AsRef<Path>) -> io::Result<Vec<LoggedRequest>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut requests = Vec::new();
    for (number, line) in complete.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let request = line.parse().map_err(|problem| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: {problem}", path.display(), number + 1),
            )
        })?;
        requests.push(request);
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{super::test_util::TempPath, *};

    fn entry<'a>(target: &'a str) -> Entry<'a> {
        Entry {
            client: "198.18.1.1:40312".parse().unwrap(),
            version: "HTTP/1.1",
            method: "GET",
            target,
            server: "198.18.1.2:8080".parse().unwrap(),
            app: App::Http,
        }
    }

    #[test]
    fn lines_round_trip() {
        let mut line = String::new();
        let time = jiff::Timestamp::new(1_748_779_200, 123_456_789).unwrap();
        entry("/api/items?id=7").write_line(&mut line, time);
        assert_eq!(
            line,
            "2025-06-01T12:00:00.123Z\t198.18.1.1:40312\tHTTP/1.1\tGET\t/api/items?id=7\t\
             198.18.1.2:8080\thttp\n"
        );
        let read: LoggedRequest = line.trim_end().parse().unwrap();
        assert_eq!(
            read.time,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_748_779_200_123)
        );
        assert_eq!(read.client, "198.18.1.1:40312".parse().unwrap());
        assert_eq!(
            (
                read.version.as_str(),
                read.method.as_str(),
                read.target.as_str()
            ),
            ("HTTP/1.1", "GET", "/api/items?id=7")
        );
        assert_eq!(read.server, "198.18.1.2:8080".parse().unwrap());
        assert_eq!(read.app, App::Http);

        // Control characters cannot split a line or a field.
        line.clear();
        entry("/a\tb\nc").write_line(&mut line, time);
        assert_eq!(line.matches('\n').count(), 1);
        let read: LoggedRequest = line.trim_end().parse().unwrap();
        assert_eq!(read.target, "/a?b?c");

        for bad in ["", "a\tb", &line.replace("\thttp", "\tdns")] {
            assert!(bad.trim_end().parse::<LoggedRequest>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn appends_and_reads_back() {
        let path = TempPath::new("appends");
        let log = RequestLog::open(&path.0).unwrap();
        assert_eq!(log.path(), path.0);
        log.record(&entry("/one"));
        log.record(&entry("/two"));
        let read = read_request_log(&path.0).unwrap();
        let targets: Vec<&str> = read.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/one", "/two"]);
        assert!(read[0].time <= read[1].time);

        // Reopening appends; a partial last line is not read, a malformed line is an error.
        drop(log);
        let log = RequestLog::open(&path.0).unwrap();
        log.record(&entry("/three"));
        assert_eq!(read_request_log(&path.0).unwrap().len(), 3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path.0)
            .unwrap()
            .write_all(b"2025-06-01T12:00:00.123Z\t198.18")
            .unwrap();
        assert_eq!(read_request_log(&path.0).unwrap().len(), 3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path.0)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        let error = read_request_log(&path.0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().ends_with(":4: 2 fields, not 7"),
            "{error}"
        );
    }

    #[test]
    fn stops_at_its_limit_with_a_note() {
        let path = TempPath::new("limit");
        let mut line = String::new();
        entry("/x").write_line(&mut line, jiff::Timestamp::now());
        let limit = (3 * line.len() + FULL_NOTE.len()) as u64;
        let log = RequestLog::open_with_limit(&path.0, limit).unwrap();
        for _ in 0..10 {
            log.record(&entry("/x"));
        }
        let text = std::fs::read_to_string(&path.0).unwrap();
        assert_eq!(text.len() as u64, limit);
        assert!(text.ends_with(FULL_NOTE), "{text}");
        assert_eq!(read_request_log(&path.0).unwrap().len(), 3);

        // A full log stays full when reopened.
        drop(log);
        let log = RequestLog::open_with_limit(&path.0, 10 * limit).unwrap();
        log.record(&entry("/y"));
        assert_eq!(std::fs::read_to_string(&path.0).unwrap(), text);
    }
}
