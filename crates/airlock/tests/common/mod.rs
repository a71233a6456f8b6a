//! Helpers for tests that run the real `airlock serve`: a threaded loopback mock upstream that
//! answers Anthropic and OpenAI requests (plain JSON or SSE streams, with real-shaped usage),
//! starting and killing the binary, and a strict HTTP/1.1 response reader that tells a
//! complete answer from one cut short.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `airlock` binary under test.
pub fn airlock() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.env_remove("AIRLOCK_CONFIG");
    c
}

/// A running `airlock serve`; killed (SIGKILL) on drop.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Serve {
    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `airlock serve` on a free loopback port with both upstreams on `upstream`.
pub fn start_serve(data_dir: &Path, upstream: SocketAddr) -> Serve {
    let mut child = airlock()
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--upstream")
        .arg(format!("anthropic=http://{upstream}"))
        .arg("--upstream")
        .arg(format!("openai=http://{upstream}/v1"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("airlock serve starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(a) = line.strip_prefix("airlock serve: listening on http://")
            && let Ok(addr) = a.trim().parse()
        {
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Serve { child, addr };
        }
        log.push_str(&line);
        log.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("airlock serve did not start:\n{log}");
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub request_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived whole: all `content-length` bytes, or the chunked terminator.
    pub complete: bool,
}

/// Reads one response until the connection closes (send `connection: close`). `None` when not
/// even the head arrived.
pub fn read_response(s: &mut TcpStream) -> Option<Response> {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.get(9..12)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (body, complete) = if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        (rest[..rest.len().min(len)].to_vec(), rest.len() == len)
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else {
        (rest.to_vec(), false)
    };
    Some(Response {
        status,
        request_id: get("x-airlock-request-id"),
        headers,
        body,
        complete,
    })
}

/// Decodes a chunked body; complete only with the final zero-size chunk.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else {
            return (out, false);
        };
        b = &b[nl + 2..];
        if size == 0 {
            return (out, b.starts_with(b"\r\n"));
        }
        if b.len() < size + 2 {
            out.extend_from_slice(&b[..b.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A threaded HTTP/1.1 mock upstream (keep-alive) answering like the vendors do:
/// `/v1/messages` (Anthropic) and `/v1/chat/completions` (OpenAI), each as JSON or, when the
/// request says `"stream":true`, as an SSE stream sent event by event with usage in it.
pub struct MockUpstream {
    pub addr: SocketAddr,
}

impl MockUpstream {
    pub fn start() -> MockUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || serve_conn(stream));
            }
        });
        MockUpstream { addr }
    }
}

fn serve_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let stream = String::from_utf8_lossy(&body).contains("\"stream\":true");
        let ok = if stream {
            let events = if path.contains("chat/completions") {
                openai_chat_events()
            } else {
                anthropic_events()
            };
            write_sse(&mut s, &events)
        } else {
            let json = if path.contains("chat/completions") {
                OPENAI_CHAT_JSON
            } else {
                ANTHROPIC_JSON
            };
            write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            )
            .is_ok()
        };
        if !ok {
            return;
        }
    }
}

fn write_sse(s: &mut TcpStream, events: &[String]) -> bool {
    if s.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    for e in events {
        if write!(s, "{:x}\r\n{e}\r\n", e.len()).is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    s.write_all(b"0\r\n\r\n").is_ok()
}

/// A non-streamed Anthropic Messages answer with real-shaped usage.
pub const ANTHROPIC_JSON: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":300,"cache_read_input_tokens":4000,"output_tokens":80,"service_tier":"standard"}}"#;

/// A non-streamed OpenAI Chat Completions answer with real-shaped usage.
pub const OPENAI_CHAT_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1764115200,"model":"gpt-5-2025-08-07","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":400,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}}"#;

/// An Anthropic Messages stream: usage in `message_start` and the final `message_delta`.
pub fn anthropic_events() -> Vec<String> {
    [
        r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":300,"cache_read_input_tokens":4000,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":80}}"#,
        r#"{"type":"message_stop"}"#,
    ]
    .iter()
    .map(|d| {
        let ty = d
            .split("\"type\":\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap_or("message");
        format!("event: {ty}\ndata: {d}\n\n")
    })
    .collect()
}

/// An OpenAI Chat stream with `stream_options.include_usage`: usage in the last chunk.
pub fn openai_chat_events() -> Vec<String> {
    [
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-5-2025-08-07","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-5-2025-08-07","choices":[{"index":0,"delta":{"content":"Hello."},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-5-2025-08-07","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-5-2025-08-07","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":400},"completion_tokens_details":{"reasoning_tokens":256}}}"#,
        "[DONE]",
    ]
    .iter()
    .map(|d| format!("data: {d}\n\n"))
    .collect()
}
