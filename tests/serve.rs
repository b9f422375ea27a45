//! `sphinx serve` cannot be held: the real binary on a free port, against clients that trickle,
//! idle, never read or crowd it, and the HTTP the browser tests rely on (ranges, HEAD, 416, CORS,
//! media types, keep-alive). The slow cases take up to the server's limits (10–20 s); cargo runs
//! these tests on parallel threads, so the file takes about as long as the slowest one.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the issue promises: a slow or idle client is closed within this long.
const CLOSED_WITHIN: Duration = Duration::from_secs(40);
/// A generous bound for an answer that should be immediate (a hang fails the test, not CI).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// A running `sphinx serve`, killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(root: &Path, extra: &[&str]) -> Served {
        let log = root.join("requests.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sphinx"))
            .args(["serve", "--root", support::s(root), "--port", "0", "--log-requests", support::s(&log)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts sphinx serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let url = first.split(" at http://").nth(1).unwrap_or_else(|| panic!("no URL in {first:?}"));
        let addr = url.trim().trim_end_matches('/').parse().unwrap();
        Served { child, addr, log }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
        s
    }

    /// One request on a fresh connection (`Connection: close`).
    fn get(&self, method: &str, path: &str, headers: &str) -> Response {
        let mut s = self.connect();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").unwrap();
        read_response(&mut s, method == "HEAD")
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response: its head, then `Content-Length` body bytes (none for HEAD).
fn read_response(s: &mut TcpStream, head_only: bool) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap_or_else(|e| panic!("no response head ({e}); got {:?}", String::from_utf8_lossy(&raw)));
        assert_eq!(n, 1, "closed before the response head ended: {:?}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = header(&head, "Content-Length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    s.read_exact(&mut body).unwrap();
    Response { status, head, body }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether the server has closed `s`: Some(true) closed, Some(false) it sent bytes, None still
/// open after `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> Option<bool> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Some(true),
        Ok(_) => Some(false),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(true), // reset
    }
}

/// Waits (up to a minute) until the server closes `s`, which must send nothing first; returns how long it took.
fn time_until_closed(s: &mut TcpStream) -> Duration {
    let t0 = Instant::now();
    loop {
        match closed_by_server(s, Duration::from_secs(1)) {
            Some(true) => return t0.elapsed(),
            Some(false) => panic!("the server answered an incomplete request"),
            None => assert!(t0.elapsed() < Duration::from_secs(60), "still open after a minute"),
        }
    }
}

fn site(name: &str) -> PathBuf {
    let root = support::fresh_dir(name);
    std::fs::write(root.join("a.txt"), b"hello, sphinx\n").unwrap();
    std::fs::write(root.join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("w.bin"), data).unwrap();
    root
}

#[test]
fn slowloris_idle_and_idle_keep_alive_clients_are_closed() {
    let root = site("serve-slow");
    let server = Served::start(&root, &[]);
    let addr = server.addr;
    // A byte every 3 s: the head never ends.
    let slowloris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        let head = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head.iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                return t0.elapsed();
            }
            match closed_by_server(&mut s, Duration::from_secs(3)) {
                Some(true) => return t0.elapsed(),
                Some(false) => panic!("the server answered an incomplete request"),
                None => assert!(t0.elapsed() < Duration::from_secs(60), "slowloris still connected after a minute"),
            }
        }
        unreachable!()
    });
    // Connected, never sends a byte.
    let idle = std::thread::spawn(move || time_until_closed(&mut TcpStream::connect(addr).unwrap()));
    // One request answered on a keep-alive connection, then silence.
    let keep_alive = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(&mut s, false);
        assert_eq!((r.status, header(&r.head, "Connection")), (200, Some("keep-alive")), "{}", r.head);
        time_until_closed(&mut s)
    });
    for (what, t) in [("slowloris", slowloris), ("idle", idle), ("idle keep-alive", keep_alive)] {
        let took = t.join().unwrap();
        assert!(took < CLOSED_WITHIN, "{what} client closed only after {took:?}");
    }
    // The server is still there for everyone else.
    let r = server.get("GET", "/a.txt", "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, sphinx\n"[..]));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_client_that_never_reads_is_dropped_and_blocks_nobody() {
    let root = site("serve-stall");
    let big: u64 = 256 << 20; // far more than the socket buffers on both ends hold
    std::fs::File::create(root.join("big.bin")).unwrap().set_len(big).unwrap();
    let server = Served::start(&root, &[]);
    let mut stalled = server.connect();
    stalled.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // While that response is stuck, others are answered.
    let r = server.get("GET", "/a.txt", "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, sphinx\n"[..]));
    // The server gives up on the stalled client: its log line says how little was sent.
    let t0 = Instant::now();
    let sent = loop {
        let line = server.log_lines().into_iter().find(|l| l["path"] == "/big.bin");
        if let Some(l) = line {
            break l["sent"].as_u64().unwrap();
        }
        assert!(t0.elapsed() < CLOSED_WITHIN, "a client that never reads still holds its response");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(sent < big, "sent all {sent} bytes to a client that never read");
    // What reaches the client now ends early: the connection is gone.
    stalled.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    assert!(got < big, "the stalled client received the whole file");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn answers_while_200_connections_are_open() {
    let root = site("serve-crowd");
    let server = Served::start(&root, &[]);
    let mut crowd: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    // Half of them have started a request they never finish.
    for s in crowd.iter_mut().step_by(2) {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let r = server.get("GET", "/w.bin", "Range: bytes=100-199\r\n");
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(r.body, (100..200u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    assert!(t0.elapsed() < ANSWER_WITHIN);
    // The crowd is still connected (nobody was pushed out to answer).
    assert!(crowd.iter_mut().all(|s| closed_by_server(s, Duration::from_millis(1)).is_none()));
    drop(crowd);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn over_the_connection_cap_is_answered_503_and_the_cap_frees_up() {
    let root = site("serve-cap");
    let server = Served::start(&root, &["--max-connections", "8"]);
    let crowd: Vec<TcpStream> = (0..8).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = server.get("GET", "/a.txt", "");
    assert_eq!(r.status, 503, "{}", r.head);
    assert_eq!(header(&r.head, "Access-Control-Allow-Origin"), Some("*"));
    drop(crowd);
    let t0 = Instant::now();
    loop {
        let r = server.get("GET", "/a.txt", "");
        if r.status == 200 {
            break;
        }
        assert!(t0.elapsed() < ANSWER_WITHIN, "the cap was not freed when the crowd left: {}", r.head);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ranges_head_416_cors_media_types_and_keep_alive() {
    let root = site("serve-http");
    let server = Served::start(&root, &[]);
    let r = server.get("GET", "/w.bin", "Range: bytes=9990-\r\nOrigin: http://elsewhere.example\r\n");
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(header(&r.head, "Content-Range"), Some("bytes 9990-9999/10000"));
    assert_eq!(r.body.len(), 10);
    assert_eq!(header(&r.head, "Access-Control-Allow-Origin"), Some("*"));
    assert!(header(&r.head, "Access-Control-Expose-Headers").unwrap().contains("Content-Range"));
    assert!(header(&r.head, "Access-Control-Allow-Headers").unwrap().contains("Range"));
    let r = server.get("GET", "/w.bin", "Range: bytes=10000-\r\n");
    assert_eq!((r.status, header(&r.head, "Content-Range")), (416, Some("bytes */10000")), "{}", r.head);
    let r = server.get("HEAD", "/w.bin", "");
    assert_eq!((r.status, header(&r.head, "Content-Length")), (200, Some("10000")), "{}", r.head);
    assert_eq!(header(&r.head, "Accept-Ranges"), Some("bytes"));
    let r = server.get("GET", "/m.wasm", "");
    assert_eq!(header(&r.head, "Content-Type"), Some("application/wasm"));
    let r = server.get("OPTIONS", "/w.bin", "Access-Control-Request-Headers: range\r\n");
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(server.get("GET", "/../etc/passwd", "").status, 404);
    // Two requests on one connection.
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).body, b"hello, sphinx\n");
    s.write_all(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, true).status, 200);
    // A request body larger than the server reads is refused, not swallowed.
    let r = server.get("GET", "/a.txt", "Content-Length: 100000000\r\n");
    assert_eq!(r.status, 413, "{}", r.head);
    // The log has one line per answered request (the 413 is refused before it is one).
    let log = server.log_lines();
    assert_eq!(log.len(), 8, "{log:?}");
    assert!(log.iter().all(|l| l["head_bytes"].as_u64().unwrap() > 0 && l["body_bytes"] == 0));
    std::fs::remove_dir_all(&root).unwrap();
}

// H1 (issue 18): a FIFO, a socket and a symlink to a device under the root. With three connection
// slots, each GET of them is answered at once (403, or 404 for what leaves the root) and frees its
// slot: far more such requests than slots leave the server answering everyone else.
#[test]
fn fifos_sockets_and_devices_under_the_root_never_hold_a_slot() {
    let root = site("serve-fifo");
    let fifo = root.join("stream.bin");
    let c = std::ffi::CString::new(support::s(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("app.sock")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero.bin")).unwrap();
    let server = Served::start(&root, &["--max-connections", "3"]);
    for round in 0..4 {
        for (path, status) in [("/stream.bin", 403), ("/app.sock", 403), ("/zero.bin", 404)] {
            let t0 = Instant::now();
            let r = server.get("GET", path, "");
            assert_eq!(r.status, status, "round {round}, {path}: {}", r.head);
            assert!(t0.elapsed() < ANSWER_WITHIN);
        }
    }
    // On one keep-alive connection too: the FIFO's 403, then a file.
    let mut s = server.connect();
    s.write_all(b"GET /stream.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).status, 403);
    assert_eq!(read_response(&mut s, false).body, b"hello, sphinx\n");
    drop(s);
    // Nobody is locked out (the keep-alive connection above may still be closing: retry briefly).
    let t0 = Instant::now();
    loop {
        let r = server.get("GET", "/a.txt", "");
        if r.status == 200 {
            assert_eq!(r.body, b"hello, sphinx\n");
            break;
        }
        assert!(t0.elapsed() < ANSWER_WITHIN, "locked out: {}", r.head);
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log_lines();
    assert!(log.iter().filter(|l| l["path"] == "/stream.bin").all(|l| l["status"] == 403 && l["sent"] == 0), "{log:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
