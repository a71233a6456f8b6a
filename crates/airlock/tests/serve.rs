//! `airlock serve` end to end: the real binary in front of a tiny loopback upstream.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A one-route HTTP/1.1 upstream on a thread: records each request, answers `{"ok":true}`.
fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (head, body) = read_message(&mut stream);
            s.lock().unwrap().push(format!("{head}\r\n\r\n{body}"));
            let resp = "{\"ok\":true}";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{resp}",
                resp.len()
            );
        }
    });
    (addr, seen)
}

fn read_message(stream: &mut TcpStream) -> (String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).trim_end().to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = stream.read_exact(&mut body);
    (head, String::from_utf8_lossy(&body).into_owned())
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[test]
fn quick_start_forwards_with_the_callers_key() {
    let (up, seen) = upstream();
    let data = tempfile::tempdir().unwrap();
    let srv = common::start_serve(data.path(), up);
    let addr = srv.addr;
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, resp) = post(
        addr,
        "/v1/messages?beta=true",
        &[
            ("content-type", "application/json"),
            ("x-api-key", "sk-ant-callers-own"),
            ("user-agent", "claude-cli/2.1.332 (external, cli)"),
            ("anthropic-beta", "brand-new-beta-2099"),
        ],
        body,
    );
    assert_eq!(status, 200, "{resp}");
    assert!(resp.ends_with("{\"ok\":true}"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert!(
        req.starts_with("POST /v1/messages?beta=true HTTP/1.1"),
        "{req}"
    );
    assert!(req.contains("x-api-key: sk-ant-callers-own"));
    assert!(req.contains("anthropic-beta: brand-new-beta-2099"));
    assert!(req.ends_with(body), "body forwarded byte for byte");

    // A blocked version gets Anthropic's error shape with the reason.
    let (status, resp) = post(
        addr,
        "/v1/messages",
        &[
            ("content-type", "application/json"),
            ("user-agent", "claude-cli/2.1.150 (external, cli)"),
        ],
        body,
    );
    assert_eq!(status, 403, "{resp}");
    assert!(
        resp.contains("\"permission_error\"") && resp.contains("2.1.198"),
        "{resp}"
    );
}

#[test]
fn anonymous_mode_refused_on_non_loopback() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ])
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to run without Airlock keys") && err.contains("airlock keys create"),
        "{err}"
    );
}

#[test]
fn bad_upstream_flag_is_a_usage_error() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "nope",
            "--data-dir",
            data.path().to_str().unwrap(),
        ])
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=URL"));
}

/// `airlock config check` checks what `serve` builds beyond the policy: the `[redaction]` table
/// and the detection engine's custom markers, each error naming the key. (It used to pass a
/// `[redaction]` that `serve` then refused.)
#[test]
fn config_check_covers_redaction_and_detection() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
            .args(["config", "check"])
            .arg(&path)
            .env_remove("AIRLOCK_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check(
        "ok.toml",
        "[redaction]\nmax_findings = 5000\npii = \"redact\"\n",
    );
    assert_eq!(code, Some(0), "{err}");
    for (name, body, key) in [
        (
            "max.toml",
            "[redaction]\nmax_findings = 0\n",
            "max_findings",
        ),
        ("pii.toml", "[redaction]\npii = \"maybe\"\n", "maybe"),
        (
            "tool.toml",
            "[redaction.tool.not-an-agent]\npii = \"redact\"\n",
            "not-an-agent",
        ),
        (
            "regex.toml",
            "[[detection.custom.patterns]]\nid = \"ticket\"\npattern = \"(\"\n",
            "ticket",
        ),
    ] {
        let (code, err) = check(name, body);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(key) && err.contains(name), "{name}: {err}");
    }
}
