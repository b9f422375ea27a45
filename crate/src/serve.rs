//! `sphinx serve`: a small static file server for the browser build, the local stand-in for the CDN a
//! converted model is hosted on. HTTP/1.1 GET/HEAD with single byte ranges (206/416), CORS (any
//! origin, `Range` allowed, `Content-Range` exposed), the right media types (`application/wasm` for
//! `WebAssembly.instantiateStreaming`), bound to 127.0.0.1 unless told otherwise. Std only: one
//! thread per connection, keep-alive.
//!
//! Test-only options (for the browser tests, never needed to serve a model): a request log (one JSON
//! line per request) and faults injected into chosen files — drop the connection after N body bytes,
//! or flip one byte at a file offset — each for a given number of responses.

use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Body bytes written per `write` call.
const CHUNK: usize = 64 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(30);
/// How long a `drop-after` fault waits between its last byte and closing the connection.
const DROP_PAUSE: Duration = Duration::from_millis(300);

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
}

impl Fault {
    /// Parses `drop-after=PATH:BYTES[:TIMES]` or `corrupt=PATH:OFFSET[:TIMES]` (TIMES defaults to 1).
    pub fn parse(spec: &str) -> Result<Fault> {
        let bad = |why: &str| Error::Config(format!("--fault {spec:?}: {why}; expected drop-after=PATH:BYTES[:TIMES] or corrupt=PATH:OFFSET[:TIMES]"));
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
}

struct State {
    root: PathBuf,
    log: Option<Mutex<File>>,
    faults: Mutex<Vec<Fault>>,
    started: Instant,
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
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = TcpListener::bind(&addr).map_err(|e| Error::io(&addr, e))?;
        let log = match &opts.log_requests {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p, e))?,
            )),
            None => None,
        };
        let state = State { root, log, faults: Mutex::new(opts.faults), started: Instant::now() };
        Ok(Server { listener, state: Arc::new(state) })
    }

    pub fn url(&self) -> Result<String> {
        let a = self.listener.local_addr().map_err(|e| Error::io("listener", e))?;
        Ok(format!("http://{a}/"))
    }

    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Serves until the process ends.
    pub fn run(self) -> Result<()> {
        for conn in self.listener.incoming() {
            let Ok(stream) = conn else { continue };
            let state = self.state.clone();
            std::thread::spawn(move || {
                let _ = serve_connection(stream, &state);
            });
        }
        Ok(())
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
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None); // closed (between requests, or mid-head)
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        if line == b"\r\n" || line == b"\n" {
            if head.len() == line.len() {
                head.clear(); // stray empty line before a request
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    // A body (no client of ours sends one) is read and counted, so that the log can prove it.
    let body_bytes: u64 = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    std::io::copy(&mut reader.by_ref().take(body_bytes), &mut std::io::sink())?;
    Ok(Some(Request { method, target, headers, head_bytes: head.len(), body_bytes }))
}

fn serve_connection(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(req) = read_request(&mut reader)? {
        let keep = respond(&mut out, &req, state)?;
        if !keep {
            break;
        }
    }
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
Cross-Origin-Resource-Policy: cross-origin\r\n";

/// Writes one response; returns whether the connection may serve another request.
fn respond(out: &mut TcpStream, req: &Request, state: &State) -> std::io::Result<bool> {
    let path_only = req.target.split(['?', '#']).next().unwrap_or("/").to_string();
    let range_header = req.headers.get("range").map(String::as_str);
    let keep_alive = !req.headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
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
    };
    let result = respond_inner(out, req, state, &path_only, range_header, conn, &mut line);
    if let Some(log) = &state.log {
        if let Ok(s) = serde_json::to_string(&line) {
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{s}");
        }
    }
    Ok(result? && keep_alive)
}

fn simple(out: &mut TcpStream, status: u16, reason: &str, extra: &str, conn: &str, line: &mut LogLine) -> std::io::Result<bool> {
    let body = format!("{status} {reason}\n");
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n{CORS}{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
        body.len()
    )?;
    line.status = status;
    Ok(true)
}

fn respond_inner(
    out: &mut TcpStream,
    req: &Request,
    state: &State,
    path_only: &str,
    range_header: Option<&str>,
    conn: &str,
    line: &mut LogLine,
) -> std::io::Result<bool> {
    match req.method.as_str() {
        "OPTIONS" => {
            write!(out, "HTTP/1.1 204 No Content\r\n{CORS}Access-Control-Max-Age: 600\r\nContent-Length: 0\r\nConnection: {conn}\r\n\r\n")?;
            line.status = 204;
            return Ok(true);
        }
        "GET" | "HEAD" => {}
        _ => return simple(out, 405, "Method Not Allowed", "Allow: GET, HEAD, OPTIONS\r\n", conn, line),
    }
    let Some(file_path) = resolve(&state.root, path_only) else {
        return simple(out, 404, "Not Found", "", conn, line);
    };
    let Ok(mut file) = File::open(&file_path) else {
        return simple(out, 404, "Not Found", "", conn, line);
    };
    let meta = file.metadata()?;
    let len = meta.len();
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    let (status, start, end) = match parse_range(range_header, len) {
        Ok(Some((a, b))) => (206, a, b),
        Ok(None) => (200, 0, len.saturating_sub(1)),
        Err(()) => {
            let extra = format!("Content-Range: bytes */{len}\r\n");
            return simple(out, 416, "Range Not Satisfiable", &extra, conn, line);
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
    // Test-only faults that apply to this response.
    let (mut drop_after, mut corrupt) = (None, None);
    {
        let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
        for f in faults.iter_mut().filter(|f| f.path == path_only && f.remaining > 0) {
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
    }
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
        let _ = out.shutdown(Shutdown::Both);
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
