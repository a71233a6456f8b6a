//! Crash test of the audit trail through the real gateway: `airlock serve` in front of a
//! loopback mock upstream, many concurrent clients (streamed and plain answers, policy
//! denials, `/v1/models`), SIGKILL mid-load. Every request whose answer arrived COMPLETELY
//! must have its record afterwards, and `airlock audit verify` must pass.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MockUpstream, Response, airlock, read_response, start_serve};

/// Concurrent client threads.
const CLIENTS: usize = 24;
/// Load before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

/// One request kind of the mix.
fn request(i: usize, addr: SocketAddr) -> String {
    let (method, path, ua, body) = match i % 6 {
        0 => (
            "POST",
            "/v1/messages",
            "claude-cli/2.1.332 (external, cli)",
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        1 => (
            "POST",
            "/v1/messages",
            "claude-cli/2.1.332 (external, cli)",
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        2 => (
            "POST",
            "/v1/chat/completions",
            "QwenCode/0.24.4 (linux; x64)",
            r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        3 => (
            "POST",
            "/v1/chat/completions",
            "QwenCode/0.24.4 (linux; x64)",
            r#"{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        // Denied by the default advisory policy: Airlock's own answer.
        4 => (
            "POST",
            "/v1/messages",
            "claude-cli/2.1.150 (external, cli)",
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        _ => ("GET", "/v1/models", "QwenCode/0.24.4 (linux; x64)", ""),
    };
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nx-api-key: sk-ant-test\r\n\
         anthropic-version: 2023-06-01\r\nuser-agent: {ua}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends one request; `Some(request id)` only when the whole answer arrived.
fn exchange(addr: SocketAddr, i: usize) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(request(i, addr).as_bytes()).ok()?;
    match read_response(&mut s)? {
        Response {
            status,
            request_id: Some(id),
            complete: true,
            ..
        } => Some((status, id)),
        _ => None,
    }
}

#[test]
fn every_completed_answer_survives_sigkill_and_the_chain_verifies() {
    let mock = MockUpstream::start();
    let data = tempfile::tempdir().unwrap();
    let mut srv = start_serve(data.path(), mock.addr);

    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<Vec<(u16, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let addr = srv.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, done, counter) = (stop.clone(), done.clone(), counter.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = exchange(addr, i) {
                        done.lock().unwrap().push(r);
                    }
                }
            })
        })
        .collect();

    // Load, then SIGKILL with requests in flight.
    let t0 = Instant::now();
    while t0.elapsed() < LOAD_BEFORE_KILL {
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.kill();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let done = done.lock().unwrap().clone();
    let sent = counter.load(Ordering::Relaxed);
    eprintln!(
        "{} of {sent} requests had their whole answer before SIGKILL",
        done.len()
    );
    let statuses: HashSet<u16> = done.iter().map(|(s, _)| *s).collect();
    assert!(
        done.len() >= 50,
        "only {} of {sent} answers completed before the kill",
        done.len()
    );
    assert!(
        statuses.contains(&200) && statuses.contains(&403),
        "{statuses:?}"
    );

    // Restart on the same data directory: the gateway opens the crashed store and goes on.
    let srv2 = start_serve(data.path(), mock.addr);
    let (status, id_after) = exchange(srv2.addr, 1).expect("answer after restart");
    assert_eq!(status, 200);
    drop(srv2);

    // Every completed answer has its record.
    let out = airlock()
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: HashSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["request_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let missing: Vec<&(u16, String)> = done.iter().filter(|(_, id)| !stored.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed answers have no audit record, e.g. {:?}",
        missing.len(),
        done.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(stored.contains(&id_after));

    // And the chain, crash included, verifies.
    let v = airlock()
        .args(["audit", "verify", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "verify failed:\n{}\n{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}
