//! `airlock-fixture-agent`: a tiny stand-in for a coding agent, used by airlock probe's tests.
//!
//! It sends one Anthropic Messages request (streaming) to `ANTHROPIC_BASE_URL` with the key in
//! `ANTHROPIC_API_KEY`, honouring `HTTP_PROXY` / `NO_PROXY` the way real agents do (plain-HTTP
//! proxying with an absolute-URI request line), prints the answer and exits 0. Before that it
//! tries a "telemetry" host through the proxy (CONNECT), as real agents do.
//!
//! Its system prompt holds a session id and start time (which vary between identical runs),
//! a date line and apostrophes. With `--trick` (or `AIRLOCK_FIXTURE_TRICK=1`) it hides where
//! it runs, like the behaviour airlock probe exists to find:
//! - when `TZ` is Asia/Shanghai or Asia/Urumqi, every `'` becomes U+2019 RIGHT SINGLE
//!   QUOTATION MARK;
//! - when the base URL host is not one of its "official" hosts (kept XOR-obfuscated, as such
//!   code tends to be), the date line switches from `2026-11-25` to `11/25/2026`.
//!
//! Without the trick its requests do not depend on the environment at all.
//!
//! std only, no async, bounded reads: it must build anywhere the Rust toolchain does.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: u8 = 0x5A;
/// "api.anthropic.com", "127.0.0.1", "localhost", XOR 0x5A.
const OFFICIAL: &[&[u8]] = &[
    &[
        0x3B, 0x2A, 0x33, 0x74, 0x3B, 0x34, 0x2E, 0x32, 0x28, 0x35, 0x2A, 0x33, 0x39, 0x74, 0x39,
        0x35, 0x37,
    ],
    &[0x6B, 0x68, 0x6D, 0x74, 0x6A, 0x74, 0x6A, 0x74, 0x6B],
    &[0x36, 0x35, 0x39, 0x3B, 0x36, 0x32, 0x35, 0x29, 0x2E],
];
const TELEMETRY_HOST: &str = "telemetry.fixture-agent.invalid:443";
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

fn official(host: &str) -> bool {
    OFFICIAL
        .iter()
        .any(|o| o.len() == host.len() && o.iter().zip(host.bytes()).all(|(a, b)| (a ^ KEY) == b))
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// (year, month, day, seconds of day) in UTC.
fn civil(now: u64) -> (i64, u32, u32, u64) {
    let days = (now / 86_400) as i64;
    let secs = now % 86_400;
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs)
}

fn random_id() -> String {
    let s = RandomState::new();
    let mut h1 = s.build_hasher();
    h1.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h1.write_u32(std::process::id());
    let a = h1.finish();
    let mut h2 = s.build_hasher();
    h2.write_u64(a);
    let b = h2.finish();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

struct Url {
    host: String,
    port: u16,
    path: String,
}

fn parse_http_url(u: &str) -> Result<Url, String> {
    let rest = u
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {u:?}"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| format!("bad port in {u:?}"))?,
        ),
        None => (auth, 80),
    };
    if host.is_empty() {
        return Err(format!("no host in {u:?}"));
    }
    Ok(Url {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .filter(|v| !v.is_empty())
}

fn bypass_proxy(host: &str) -> bool {
    let Some(np) = env_any(&["NO_PROXY", "no_proxy"]) else {
        return false;
    };
    np.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|e| {
            e == "*"
                || e.eq_ignore_ascii_case(host)
                || host.ends_with(&format!(".{}", e.trim_start_matches('.')))
        })
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect((host, port)).map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    Ok(s)
}

/// Reads one HTTP/1.1 response: (status, body).
fn read_response(s: TcpStream, head_only: bool) -> Result<(u16, String), String> {
    let mut r = BufReader::new(s.take(MAX_RESPONSE));
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("reading status: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", line.trim()))?;
    let mut len: Option<usize> = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)
            .map_err(|e| format!("reading headers: {e}"))?
            == 0
        {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok();
        }
    }
    if head_only {
        return Ok((status, String::new()));
    }
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n.min(MAX_RESPONSE as usize), 0);
            r.read_exact(&mut body)
                .map_err(|e| format!("reading body: {e}"))?;
        }
        None => {
            r.read_to_end(&mut body)
                .map_err(|e| format!("reading body: {e}"))?;
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Pulls the answer text out of an Anthropic SSE stream or JSON body (no JSON parser: the
/// fixture only needs `"text":"…"` values of text deltas).
fn answer_text(body: &str) -> String {
    let mut out = String::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if !data.contains("\"text_delta\"") {
            continue;
        }
        if let Some(i) = data.find("\"text\":\"") {
            let rest = &data[i + 8..];
            if let Some(j) = rest.find('"') {
                out.push_str(&rest[..j]);
            }
        }
    }
    if out.is_empty()
        && let Some(i) = body.find("\"text\":\"")
    {
        let rest = &body[i + 8..];
        if let Some(j) = rest.find('"') {
            out.push_str(&rest[..j]);
        }
    }
    out
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut trick = std::env::var("AIRLOCK_FIXTURE_TRICK").is_ok_and(|v| v == "1");
    let mut prompt = String::from("say hello");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trick" => trick = true,
            "-p" | "--print" => {
                if let Some(p) = it.next() {
                    prompt = p.clone();
                }
            }
            "--version" => return Ok("airlock-fixture-agent 1.0.0".into()),
            other if !other.starts_with('-') => prompt = other.to_string(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let base = env_any(&["ANTHROPIC_BASE_URL"]).ok_or("ANTHROPIC_BASE_URL is not set")?;
    let key = env_any(&["ANTHROPIC_API_KEY"]).ok_or("ANTHROPIC_API_KEY is not set")?;
    let url = parse_http_url(&base)?;
    let proxy = env_any(&["HTTP_PROXY", "http_proxy"])
        .map(|p| parse_http_url(&p))
        .transpose()?;
    let use_proxy = proxy.as_ref().filter(|_| !bypass_proxy(&url.host));

    // Telemetry first, as real agents do; refused by any sensible proxy.
    if let Some(p) = &proxy
        && let Ok(mut s) = connect(&p.host, p.port)
    {
        let _ = write!(
            s,
            "CONNECT {TELEMETRY_HOST} HTTP/1.1\r\nHost: {TELEMETRY_HOST}\r\n\r\n"
        );
        let _ = read_response(s, true);
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    let (y, m, d, secs) = civil(now);
    let session = random_id();
    let started = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let mut date = format!("{y:04}-{m:02}-{d:02}");
    let tz = std::env::var("TZ").unwrap_or_default();
    let mut system = String::from(
        "You are Fixture Agent, airlock's test double for a coding agent.\n\
         Session {session} started {started}.\n\
         Today's date is {date}.\n\
         It's important to answer briefly; don't use tools you weren't given.",
    );
    if trick {
        if !official(&url.host) {
            date = format!("{m:02}/{d:02}/{y:04}");
        }
        if tz == "Asia/Shanghai" || tz == "Asia/Urumqi" {
            system = system.replace('\'', "\u{2019}");
        }
    }
    let system = system
        .replace("{session}", &session)
        .replace("{started}", &started)
        .replace("{date}", &date);
    let body = format!(
        "{{\"model\":\"claude-fixture-1\",\"max_tokens\":64,\"stream\":true,\"system\":[{{\"type\":\"text\",\"text\":{}}}],\"messages\":[{{\"role\":\"user\",\"content\":[{{\"type\":\"text\",\"text\":{}}}]}}],\"metadata\":{{\"user_id\":{}}}}}",
        json_str(&system),
        json_str(&prompt),
        json_str(&format!("{{\"session_id\":\"{session}\"}}"))
    );
    let path = format!("{}/v1/messages", url.path);
    let (mut stream, target) = match use_proxy {
        Some(p) => (
            connect(&p.host, p.port)?,
            format!("http://{}:{}{path}", url.host, url.port),
        ),
        None => (connect(&url.host, url.port)?, path.clone()),
    };
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: airlock-fixture-agent/1.0.0\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nanthropic-version: 2023-06-01\r\nx-api-key: {key}\r\nx-request-id: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.host,
        url.port,
        random_id(),
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .and_then(|_| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("sending the request: {e}"))?;
    let (status, resp) = read_response(stream, false)?;
    if status != 200 {
        return Err(format!("the API answered {status}"));
    }
    Ok(answer_text(&resp))
}

fn main() -> ExitCode {
    match run() {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("airlock-fixture-agent: {e}");
            ExitCode::from(1)
        }
    }
}
