//! `sphinx serve`: a small static file server for the browser build, the local stand-in for the CDN a
//! converted model is hosted on. HTTP/1.1 GET/HEAD with single byte ranges (206/416), CORS (any
//! origin, `Range` allowed, `Content-Range` exposed), the right media types (`application/wasm` for
//! `WebAssembly.instantiateStreaming`), cross-origin isolation (`Cross-Origin-Opener-Policy:
//! same-origin`, `Cross-Origin-Embedder-Policy: require-corp`: pages it serves may share memory
//! between workers, which the engine's threaded CPU build needs; `Cross-Origin-Resource-Policy:
//! cross-origin` lets isolated pages elsewhere load its files), bound to 127.0.0.1 unless told otherwise; regular files
//! only (a FIFO, device or socket under the root is answered 403 without being read). Std only: one
//! thread per connection, keep-alive, and [`ServeLimits`] so that no client can hold it: a capped
//! number of open connections, idle connections closed, a deadline for a whole request (a client
//! trickling its head is closed), a client that stops reading dropped, requests per connection capped.
//!
//! Test-only options (for the browser tests, never needed to serve a model): a request log (one JSON
//! line per request) and faults injected into chosen files — drop the connection after N body bytes,
//! flip one byte at a file offset, or answer a short HTML error page with a given status whatever
//! was asked (as a misconfigured CDN does) — each for a given number of responses.

use sphinx::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read (and discarded); no client of ours sends one.
const MAX_BODY: u64 = 64 * 1024;
/// Body bytes written per `write` call.
const CHUNK: usize = 64 * 1024;
/// How long a `drop-after` fault waits between its last byte and closing the connection.
const DROP_PAUSE: Duration = Duration::from_millis(300);
/// Stack of a connection thread: it holds a parsed head and a 64 KiB heap buffer, nothing deep.
const CONN_STACK: usize = 256 * 1024;

/// What a client may hold: every connection is closed once it idles, trickles its request or stops
/// reading, so that no client keeps a thread for longer than these bounds allow.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Open connections at most; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// A connection waiting for (the first byte of) its next request is closed after this long.
    pub idle: Duration,
    /// A request's head and body must have arrived this long after its first byte.
    pub request_deadline: Duration,
    /// Each 64 KiB of a response must be taken by the client within this long (a client that
    /// stops reading is dropped).
    pub write_stall: Duration,
    /// Requests served on one keep-alive connection; the last one answers `Connection: close`.
    pub max_requests: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 512,
            idle: Duration::from_secs(20),
            request_deadline: Duration::from_secs(10),
            write_stall: Duration::from_secs(20),
            max_requests: 1000,
        }
    }
}

/// A test-only fault injected into the responses for one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// URL path of the file, e.g. `/models/golden/model-00001-of-00001.safetensors`.
    pub path: String,
    pub kind: FaultKind,
    /// How many responses it still applies to.
    pub remaining: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// Close the connection after this many body bytes of a response (headers promise more).
    DropAfter(u64),
    /// XOR 0xff into the byte at this file offset whenever a response covers it.
    Corrupt(u64),
    /// Answer this status with a short HTML page instead of the file, ignoring any `Range`.
    ErrorPage(u16),
}

impl Fault {
    /// Parses `drop-after=PATH:BYTES[:TIMES]`, `corrupt=PATH:OFFSET[:TIMES]` or
    /// `error-page=PATH:STATUS[:TIMES]` (TIMES defaults to 1).
    pub fn parse(spec: &str) -> Result<Fault> {
        let bad = |why: &str| Error::Config(format!("--fault {spec:?}: {why}; expected drop-after=PATH:BYTES[:TIMES], corrupt=PATH:OFFSET[:TIMES] or error-page=PATH:STATUS[:TIMES]"));
        let (kind, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 || parts[0].is_empty() {
            return Err(bad("wrong number of fields"));
        }
        let n: u64 = parts[1].parse().map_err(|_| bad("not a number"))?;
        let remaining: u32 = match parts.get(2) {
            Some(t) => t.parse().map_err(|_| bad("TIMES is not a number"))?,
            None => 1,
        };
        let kind = match kind {
            "drop-after" => FaultKind::DropAfter(n),
            "corrupt" => FaultKind::Corrupt(n),
            "error-page" => match u16::try_from(n) {
                Ok(status @ 200..=599) => FaultKind::ErrorPage(status),
                _ => return Err(bad("STATUS must be in 200..=599")),
            },
            _ => return Err(bad("unknown fault")),
        };
        let path = if parts[0].starts_with('/') { parts[0].to_string() } else { format!("/{}", parts[0]) };
        Ok(Fault { path, kind, remaining })
    }
}

pub struct ServeOptions {
    pub root: PathBuf,
    pub host: String,
    /// 0 picks a free port (printed on start).
    pub port: u16,
    /// Test-only: append one JSON line per request to this file.
    pub log_requests: Option<PathBuf>,
    /// Test-only faults.
    pub faults: Vec<Fault>,
    pub limits: ServeLimits,
}

struct State {
    root: PathBuf,
    log: Option<Mutex<File>>,
    faults: Mutex<Vec<Fault>>,
    started: Instant,
    limits: ServeLimits,
    /// Connections open now (each holds one thread).
    open: AtomicUsize,
}

pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    /// Binds the listening socket (so that the port is known before serving).
    pub fn bind(opts: ServeOptions) -> Result<Server> {
        let root = opts.root.canonicalize().map_err(|e| Error::io(&opts.root, e))?;
        if !root.is_dir() {
            return Err(Error::Config(format!("--root {}: not a folder", root.display())));
        }
        if opts.limits.max_connections == 0 {
            return Err(Error::Config("--max-connections: must be at least 1".into()));
        }
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = TcpListener::bind(&addr).map_err(|e| Error::io(&addr, e))?;
        let log = match &opts.log_requests {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p, e))?,
            )),
            None => None,
        };
        let state =
            State { root, log, faults: Mutex::new(opts.faults), started: Instant::now(), limits: opts.limits, open: AtomicUsize::new(0) };
        Ok(Server { listener, state: Arc::new(state) })
    }

    pub fn url(&self) -> Result<String> {
        let a = self.listener.local_addr().map_err(|e| Error::io("listener", e))?;
        Ok(format!("http://{a}/"))
    }

    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Serves until the process ends: one thread per open connection, at most
    /// `limits.max_connections` of them; the accept loop itself never waits on a client.
    pub fn run(self) -> Result<()> {
        let refused = Refused::start();
        for conn in self.listener.incoming() {
            let Ok(stream) = conn else { continue };
            let state = self.state.clone();
            if state.open.fetch_add(1, Ordering::SeqCst) >= state.limits.max_connections {
                state.open.fetch_sub(1, Ordering::SeqCst);
                refused.refuse(stream);
                continue;
            }
            let guard = OpenGuard(state.clone());
            let spawned = std::thread::Builder::new().stack_size(CONN_STACK).spawn(move || {
                let _guard = guard;
                let _ = serve_connection(stream, &state);
            });
            // Out of threads: the closure (and with it the stream and the guard) is dropped.
            drop(spawned);
        }
        Ok(())
    }
}

/// Counts a connection as open until its thread ends.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a refused connection is read from after its 503, so that a request still on its way
/// lands before the close (a close with unread bytes resets the connection, and the client sees a
/// broken pipe instead of the 503).
const REFUSED_LINGER: Duration = Duration::from_millis(200);
/// Refused connections waiting for the linger thread; more are closed at once.
const REFUSED_QUEUE: usize = 64;

/// Over the connection cap: the accept loop writes a 503 (it fits the socket buffer, so this
/// does not block) and hands the connection to one thread that drains and closes it, so that
/// the accept loop never waits on a client and refused clients never hold more than one thread.
struct Refused(Option<std::sync::mpsc::SyncSender<TcpStream>>);

impl Refused {
    fn start() -> Refused {
        let (send, recv) = std::sync::mpsc::sync_channel::<TcpStream>(REFUSED_QUEUE);
        let spawned = std::thread::Builder::new().stack_size(CONN_STACK).spawn(move || {
            for stream in recv {
                linger(stream);
            }
        });
        Refused(spawned.ok().map(|_| send))
    }

    fn refuse(&self, stream: TcpStream) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let body = "503 Service Unavailable: too many open connections\n";
        let _ = write!(
            &stream,
            "HTTP/1.1 503 Service Unavailable\r\n{CORS}Retry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.shutdown(Shutdown::Write);
        if let Some(send) = &self.0 {
            let _ = send.try_send(stream);
        }
    }
}

/// Reads and drops what the client still sends, until it closes or [`REFUSED_LINGER`] passes.
fn linger(mut stream: TcpStream) {
    let deadline = Instant::now() + REFUSED_LINGER;
    let mut sink = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    head_bytes: usize,
    body_bytes: u64,
}

/// What one response did, for the request log.
#[derive(serde::Serialize)]
struct LogLine<'a> {
    t: f64,
    method: &'a str,
    path: &'a str,
    range: Option<&'a str>,
    head_bytes: usize,
    body_bytes: u64,
    status: u16,
    sent: u64,
    fault: Option<String>,
    /// A drop-after fault cut this response: the connection is closed once the line is logged
    /// (so a client that sees the close finds the line written).
    #[serde(skip)]
    cut: bool,
}

/// The reading side of a connection: its bytes received but not yet parsed, read under deadlines.
struct Incoming {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Why no request came: the client closed, or broke a limit (answered with this status, then closed).
enum NoRequest {
    Closed,
    Refuse(u16, &'static str),
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow")
}

impl Incoming {
    /// Reads more bytes, waiting no later than `deadline`; Ok(0) when the client closed.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut tmp = [0u8; 8192];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Err(timed_out()),
            Err(e) => Err(e),
        }
    }

    /// The next request: its first byte within `limits.idle`, then its head (and any body) within
    /// `limits.request_deadline` of that byte.
    fn next_request(&mut self, limits: &ServeLimits) -> std::io::Result<std::result::Result<Request, NoRequest>> {
        let idle_until = Instant::now() + limits.idle;
        let mut first_byte: Option<Instant> = None;
        let head_len = loop {
            // Stray empty lines before a request are skipped.
            let lead = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            self.buf.drain(..lead);
            if !self.buf.is_empty() && first_byte.is_none() {
                first_byte = Some(Instant::now());
            }
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Ok(Err(NoRequest::Refuse(431, "Request Header Fields Too Large")));
            }
            let deadline = first_byte.map_or(idle_until, |t| t + limits.request_deadline);
            if self.fill(deadline)? == 0 {
                return Ok(Err(NoRequest::Closed)); // closed (between requests, or mid-head)
            }
        };
        if head_len > MAX_HEAD {
            return Ok(Err(NoRequest::Refuse(431, "Request Header Fields Too Large")));
        }
        let head: Vec<u8> = self.buf.drain(..head_len).collect();
        let Some(mut req) = parse_head(&head) else { return Ok(Err(NoRequest::Refuse(400, "Bad Request"))) };
        if req.headers.contains_key("transfer-encoding") {
            return Ok(Err(NoRequest::Refuse(501, "Not Implemented")));
        }
        // A body (no client of ours sends one) is read and counted, so that the log can prove it.
        let body_bytes = match req.headers.get("content-length").map(|v| v.parse::<u64>()) {
            None => 0,
            Some(Ok(n)) if n <= MAX_BODY => n,
            Some(Ok(_)) => return Ok(Err(NoRequest::Refuse(413, "Content Too Large"))),
            Some(Err(_)) => return Ok(Err(NoRequest::Refuse(400, "Bad Request"))),
        };
        let deadline = first_byte.unwrap_or_else(Instant::now) + limits.request_deadline;
        while (self.buf.len() as u64) < body_bytes {
            if self.fill(deadline)? == 0 {
                return Ok(Err(NoRequest::Closed));
            }
        }
        self.buf.drain(..body_bytes as usize);
        req.body_bytes = body_bytes;
        Ok(Ok(req))
    }
}

/// Length of the request head at the start of `buf` (up to and including its empty line), once
/// complete. Lines end in CRLF or a bare LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') {
        let line = &buf[i..i + nl];
        if i > 0 && (line.is_empty() || line == b"\r") {
            return Some(i + nl + 1);
        }
        i += nl + 1;
    }
    None
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let mut parts = lines.next()?.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Request { method, target, headers, head_bytes: head.len(), body_bytes: 0 })
}

/// The writing side of a connection: every `write_all` must be taken by the client within
/// `stall` (`SO_SNDTIMEO` alone bounds one `write` call, which a trickling reader can renew).
struct Outgoing {
    stream: TcpStream,
    stall: Duration,
}

impl Write for Outgoing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.stall))?;
        self.stream.write(buf)
    }

    fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + self.stall;
        while !buf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Err(timed_out()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn serve_connection(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let limits = &state.limits;
    let mut incoming = Incoming { stream: stream.try_clone()?, buf: Vec::new() };
    let mut out = Outgoing { stream, stall: limits.write_stall };
    for served in 1..=limits.max_requests {
        let req = match incoming.next_request(limits)? {
            Ok(req) => req,
            Err(NoRequest::Closed) => break,
            Err(NoRequest::Refuse(status, reason)) => {
                simple(&mut out, status, reason, "", "close", None)?;
                break;
            }
        };
        let keep = respond(&mut out, &req, state, served < limits.max_requests)?;
        if !keep {
            break;
        }
    }
    let _ = out.stream.shutdown(Shutdown::Both);
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file a URL path names under `root`, refusing anything that leaves it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut p = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if p.is_dir() {
        p.push("index.html");
    }
    // Symbolic links may point anywhere; only serve what stays under the root.
    let real = p.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" | "md" | "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A single `bytes=` range resolved against `len`: Ok(Some((start, end_inclusive))), Ok(None) to
/// send the whole file (absent or multi-range header), Err(()) when unsatisfiable.
pub fn parse_range(header: Option<&str>, len: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // multipart ranges: answering with the whole file is allowed
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    let end: u64 = if b.is_empty() { len.saturating_sub(1) } else { b.parse().map_err(|_| ())? };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end.min(len - 1))))
}

const CORS: &str = "Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
Access-Control-Allow-Headers: Range, Content-Type\r\n\
Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag\r\n\
Cross-Origin-Resource-Policy: cross-origin\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Cross-Origin-Embedder-Policy: require-corp\r\n";

/// Writes one response; returns whether the connection may serve another request.
/// `may_keep`: false on the last request a connection may serve.
fn respond(out: &mut Outgoing, req: &Request, state: &State, may_keep: bool) -> std::io::Result<bool> {
    let path_only = req.target.split(['?', '#']).next().unwrap_or("/").to_string();
    let range_header = req.headers.get("range").map(String::as_str);
    let keep_alive = may_keep && !req.headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let mut line = LogLine {
        t: state.started.elapsed().as_secs_f64(),
        method: &req.method,
        path: &req.target,
        range: range_header,
        head_bytes: req.head_bytes,
        body_bytes: req.body_bytes,
        status: 0,
        sent: 0,
        fault: None,
        cut: false,
    };
    let result = respond_inner(out, req, state, &path_only, range_header, conn, &mut line);
    if let Some(log) = &state.log {
        if let Ok(s) = serde_json::to_string(&line) {
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{s}");
        }
    }
    if line.cut {
        let _ = out.stream.shutdown(Shutdown::Both);
    }
    Ok(result? && keep_alive)
}

/// A short text response (an error), recorded in `line` when there is one.
fn simple(out: &mut Outgoing, status: u16, reason: &str, extra: &str, conn: &str, line: Option<&mut LogLine>) -> std::io::Result<bool> {
    let body = format!("{status} {reason}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n{CORS}{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        body.len()
    );
    out.write_all((head + &body).as_bytes())?;
    if let Some(line) = line {
        line.status = status;
    }
    Ok(true)
}

/// A file to serve: regular files only. A FIFO, device or socket is refused from its type (403),
/// and the file is opened without blocking (a FIFO with no writer would hold this thread for good)
/// and checked again once open, in case it was swapped meanwhile. Err(404) when it cannot be opened.
fn open_served(path: &Path) -> std::result::Result<(File, std::fs::Metadata), u16> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(403);
    }
    let file = sphinx::io::files::open_nonblocking(path).map_err(|_| 404u16)?;
    let meta = file.metadata().map_err(|_| 404u16)?;
    if !meta.is_file() {
        return Err(403);
    }
    Ok((file, meta))
}

/// Test only: the `drop-after` and `corrupt` faults that apply to a response of bytes
/// `start..=end` of `path` (each spent once).
fn take_body_faults(state: &State, path: &str, start: u64, end: u64) -> (Option<u64>, Option<u64>) {
    let (mut drop_after, mut corrupt) = (None, None);
    let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
    for f in faults.iter_mut().filter(|f| f.path == path && f.remaining > 0) {
        match f.kind {
            FaultKind::DropAfter(n) if drop_after.is_none() => {
                drop_after = Some(n);
                f.remaining -= 1;
            }
            FaultKind::Corrupt(off) if corrupt.is_none() && (start..=end).contains(&off) => {
                corrupt = Some(off);
                f.remaining -= 1;
            }
            _ => {}
        }
    }
    (drop_after, corrupt)
}

/// Test only: the status of an `error-page` fault for this path when it is the first fault left for
/// it among those that decide a whole response (`error-page`, `drop-after`: they apply in the order
/// given, so `drop-after=P:N:1` before `error-page=P:200:1` cuts the first response and answers
/// the second with the page); it is then spent once.
fn take_error_page(state: &State, path: &str) -> Option<u16> {
    let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
    let f = faults.iter_mut().find(|f| f.path == path && f.remaining > 0 && matches!(f.kind, FaultKind::ErrorPage(_) | FaultKind::DropAfter(_)))?;
    if !matches!(f.kind, FaultKind::ErrorPage(_)) {
        return None;
    }
    f.remaining -= 1;
    match f.kind {
        FaultKind::ErrorPage(status) => Some(status),
        _ => None,
    }
}

/// Test only: a short HTML page with `status` (what a CDN's error or login page looks like).
fn error_page(out: &mut Outgoing, status: u16, conn: &str, line: &mut LogLine) -> std::io::Result<bool> {
    let body = format!("<!doctype html><html><head><title>Error {status}</title></head><body><h1>Something went wrong ({status})</h1></body></html>\n");
    let head = format!(
        "HTTP/1.1 {status} Fault\r\n{CORS}Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: {conn}\r\n\r\n",
        body.len()
    );
    out.write_all((head + &body).as_bytes())?;
    line.status = status;
    line.sent = body.len() as u64;
    Ok(true)
}

fn respond_inner(
    out: &mut Outgoing,
    req: &Request,
    state: &State,
    path_only: &str,
    range_header: Option<&str>,
    conn: &str,
    line: &mut LogLine,
) -> std::io::Result<bool> {
    match req.method.as_str() {
        "OPTIONS" => {
            let head = format!("HTTP/1.1 204 No Content\r\n{CORS}Access-Control-Max-Age: 600\r\nContent-Length: 0\r\nConnection: {conn}\r\n\r\n");
            out.write_all(head.as_bytes())?;
            line.status = 204;
            return Ok(true);
        }
        "GET" | "HEAD" => {}
        _ => return simple(out, 405, "Method Not Allowed", "Allow: GET, HEAD, OPTIONS\r\n", conn, Some(line)),
    }
    if let Some(status) = take_error_page(state, path_only) {
        line.fault = Some(format!("error-page {status}"));
        return error_page(out, status, conn, line);
    }
    let Some(file_path) = resolve(&state.root, path_only) else {
        return simple(out, 404, "Not Found", "", conn, Some(line));
    };
    let (mut file, meta) = match open_served(&file_path) {
        Ok(opened) => opened,
        Err(403) => return simple(out, 403, "Forbidden", "", conn, Some(line)),
        Err(_) => return simple(out, 404, "Not Found", "", conn, Some(line)),
    };
    let len = meta.len();
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    let (status, start, end) = match parse_range(range_header, len) {
        Ok(Some((a, b))) => (206, a, b),
        Ok(None) => (200, 0, len.saturating_sub(1)),
        Err(()) => {
            let extra = format!("Content-Range: bytes */{len}\r\n");
            return simple(out, 416, "Range Not Satisfiable", &extra, conn, Some(line));
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\n{CORS}Content-Type: {}\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\nCache-Control: no-cache\r\nConnection: {conn}\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        content_type(&file_path),
    );
    if status == 206 {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    line.status = status;
    if req.method == "HEAD" || count == 0 {
        return Ok(true);
    }
    send_body(out, &mut file, state, path_only, (start, end), line)
}

/// Bytes start..=end of `file` (it seeks there itself), with the body faults
/// `sphinx serve --fault` asked for on this path; false when a fault cut the connection.
fn send_body(out: &mut Outgoing, file: &mut File, state: &State, path_only: &str, (start, end): (u64, u64), line: &mut LogLine) -> std::io::Result<bool> {
    let count = end - start + 1;
    let (drop_after, corrupt) = take_body_faults(state, path_only, start, end);
    let applied: Vec<String> = drop_after.map(|n| format!("drop-after {n}")).into_iter().chain(corrupt.map(|o| format!("corrupt {o}"))).collect();
    if !applied.is_empty() {
        line.fault = Some(applied.join(", "));
    }
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = start;
    let limit = drop_after.map_or(count, |n| n.min(count));
    while line.sent < limit {
        let want = (limit - line.sent).min(CHUNK as u64) as usize;
        let got = file.read(&mut buf[..want])?;
        if got == 0 {
            break; // the file shrank while being served
        }
        if let Some(o) = corrupt {
            if (pos..pos + got as u64).contains(&o) {
                buf[(o - pos) as usize] ^= 0xff;
            }
        }
        out.write_all(&buf[..got])?;
        line.sent += got as u64;
        pos += got as u64;
    }
    if drop_after.is_some() && line.sent < count {
        out.flush()?;
        // Let the client take in what was sent before the connection fails (a browser discards
        // body bytes still queued in a stream when it errors).
        std::thread::sleep(DROP_PAUSE);
        line.cut = true;
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=3-5"), 10), Ok(Some((3, 5))));
        assert_eq!(parse_range(Some("bytes=3-50"), 10), Ok(Some((3, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-3"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }

    #[test]
    fn faults_parse() {
        assert_eq!(
            Fault::parse("drop-after=m/a.safetensors:1000").unwrap(),
            Fault { path: "/m/a.safetensors".into(), kind: FaultKind::DropAfter(1000), remaining: 1 }
        );
        assert_eq!(Fault::parse("corrupt=/a:7:3").unwrap().kind, FaultKind::Corrupt(7));
        assert!(Fault::parse("corrupt=/a").is_err());
        assert!(Fault::parse("melt=/a:1").is_err());
        assert_eq!(Fault::parse("error-page=/a:200:6").unwrap(), Fault { path: "/a".into(), kind: FaultKind::ErrorPage(200), remaining: 6 });
        assert!(Fault::parse("error-page=/a:99").is_err());
    }

    #[test]
    fn paths_stay_under_the_root() {
        let root = std::env::temp_dir().join(format!("sphinx-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a b.txt"), b"x").unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "/sub/a%20b.txt").is_some());
        assert!(resolve(&root, "/../etc/passwd").is_none());
        assert!(resolve(&root, "/sub/%2e%2e/%2e%2e/etc/passwd").is_none());
        assert!(resolve(&root, "/missing").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The real server over a socket: a range, CORS, a dropped and a corrupted response, the log.
    #[test]
    fn serves_ranges_and_faults() {
        let root = std::env::temp_dir().join(format!("sphinx-serve-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("w.bin"), &data).unwrap();
        std::fs::write(root.join("m.wasm"), b"\0asm").unwrap();
        let log = root.join("log.jsonl");
        let server = Server::bind(ServeOptions {
            root: root.clone(),
            host: "127.0.0.1".into(),
            port: 0,
            log_requests: Some(log.clone()),
            limits: ServeLimits::default(),
            faults: vec![Fault::parse("drop-after=/w.bin:1000").unwrap(), Fault::parse("corrupt=/w.bin:5").unwrap()],
        })
        .unwrap();
        let addr = server.listener.local_addr().unwrap();
        std::thread::spawn(move || server.run());
        let get = |range: Option<&str>, path: &str| -> (String, Vec<u8>) {
            let mut s = TcpStream::connect(addr).unwrap();
            let r = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{r}Connection: close\r\n\r\n").unwrap();
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            (String::from_utf8_lossy(&all[..split]).to_string(), all[split..].to_vec())
        };
        // first response: both faults apply (dropped after 1000 bytes, byte 5 flipped)
        let (h, body) = get(None, "/w.bin");
        assert!(h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 200000"), "{h}");
        assert_eq!(body.len(), 1000);
        assert_eq!(body[5], data[5] ^ 0xff);
        // the faults are spent: a resumed range is intact
        let (h, body) = get(Some("bytes=1000-"), "/w.bin");
        assert!(h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 1000-199999/200000"), "{h}");
        assert!(h.contains("Access-Control-Allow-Origin: *"), "{h}");
        assert_eq!(body, &data[1000..]);
        let (h, _) = get(Some("bytes=200000-"), "/w.bin");
        assert!(h.starts_with("HTTP/1.1 416"), "{h}");
        let (h, _) = get(None, "/m.wasm");
        assert!(h.contains("Content-Type: application/wasm"), "{h}");
        let (h, _) = get(None, "/../w.bin");
        assert!(h.starts_with("HTTP/1.1 404"), "{h}");
        let lines = std::fs::read_to_string(&log).unwrap();
        assert_eq!(lines.lines().count(), 5, "{lines}");
        assert!(lines.lines().next().unwrap().contains("\"sent\":1000"), "{lines}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
