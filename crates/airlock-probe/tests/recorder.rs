//! The recorder over real HTTP on 127.0.0.1: API calls direct, through the proxy and through a
//! CONNECT tunnel; everything else recorded by host and refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use airlock_probe::canned::Api;
use airlock_probe::recorder::{Recorder, RecorderConfig, Via};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `head` + `body` on `s`, returns (status, body).
fn exchange(s: &mut TcpStream, head: &str, body: &str) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b).unwrap();
    (status, String::from_utf8(b).unwrap())
}

fn post(target: &str, host: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Api-Key: sk-test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
}

#[test]
fn direct_proxied_tunnelled_and_refused_requests_are_recorded() {
    let rt = rt();
    let rec = rt
        .block_on(Recorder::start(RecorderConfig {
            api_hosts: vec!["api.corp-example.cn".into()],
            ..RecorderConfig::default()
        }))
        .unwrap();
    let port = rec.port();
    let addr = rec.addr();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    // 1. direct
    let mut s = TcpStream::connect(addr).unwrap();
    let (st, resp) = exchange(
        &mut s,
        &post("/v1/messages?beta=true", &addr.to_string(), body),
        body,
    );
    assert_eq!(st, 200);
    assert!(
        resp.contains("\"text_delta\"") && resp.contains("hello"),
        "{resp}"
    );

    // 2. through the proxy, absolute URI, API host on the recorder's port
    let mut s = TcpStream::connect(addr).unwrap();
    let target = format!("http://api.corp-example.cn:{port}/v1/chat/completions");
    let (st, resp) = exchange(
        &mut s,
        &post(&target, &format!("api.corp-example.cn:{port}"), body),
        body,
    );
    assert_eq!(st, 200);
    assert!(resp.ends_with("data: [DONE]\n\n"), "{resp}");

    // 3. through the proxy to another host: refused
    let mut s = TcpStream::connect(addr).unwrap();
    let (st, _) = exchange(
        &mut s,
        &post(
            "http://telemetry.example.com/v1/events",
            "telemetry.example.com",
            "{}",
        ),
        "{}",
    );
    assert_eq!(st, 403);

    // 4. CONNECT to another host: refused
    let mut s = TcpStream::connect(addr).unwrap();
    let (st, _) = exchange(
        &mut s,
        "CONNECT statsig.anthropic.com:443 HTTP/1.1\r\nHost: statsig.anthropic.com:443\r\n\r\n",
        "",
    );
    assert_eq!(st, 403);

    // 5. CONNECT to the API host: tunnel, then plain HTTP inside
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connect = format!(
        "CONNECT api.corp-example.cn:{port} HTTP/1.1\r\nHost: api.corp-example.cn:{port}\r\n\r\n"
    );
    s.write_all(connect.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let gbody = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    let (st, resp) = exchange(
        &mut s,
        &post(
            "/v1beta/models/gem:streamGenerateContent?alt=sse",
            &format!("api.corp-example.cn:{port}"),
            gbody,
        ),
        gbody,
    );
    assert_eq!(st, 200);
    assert!(resp.starts_with("data: {"), "{resp}");

    // 6. unknown endpoint
    let mut s = TcpStream::connect(addr).unwrap();
    let (st, _) = exchange(&mut s, &post("/v2/whatever", &addr.to_string(), "{}"), "{}");
    assert_eq!(st, 404);

    std::thread::sleep(Duration::from_millis(50));
    let recs = rec.records();
    let summary: Vec<(Via, &str, u16, Option<Api>)> = recs
        .iter()
        .map(|r| (r.via, r.host_name(), r.status, r.api))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Via::Direct, "127.0.0.1", 200, Some(Api::AnthropicMessages)),
            (
                Via::Proxy,
                "api.corp-example.cn",
                200,
                Some(Api::OpenAiChat)
            ),
            (Via::Proxy, "telemetry.example.com", 403, None),
            (Via::Connect, "statsig.anthropic.com", 403, None),
            (Via::Connect, "api.corp-example.cn", 200, None),
            (
                Via::Tunnel,
                "api.corp-example.cn",
                200,
                Some(Api::GeminiStream)
            ),
            (Via::Direct, "127.0.0.1", 404, None),
        ]
    );
    assert_eq!(recs[0].body, body);
    assert_eq!(recs[0].query, "beta=true");
    assert_eq!(recs[0].path, "/v1/messages");
    assert!(
        recs[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "sk-test")
    );
}

#[test]
fn oversized_bodies_are_refused_and_recorded_as_truncated() {
    let rt = rt();
    let rec = rt
        .block_on(Recorder::start(RecorderConfig {
            max_body: 1024,
            ..RecorderConfig::default()
        }))
        .unwrap();
    let big = "x".repeat(4096);
    let mut s = TcpStream::connect(rec.addr()).unwrap();
    let (st, _) = exchange(
        &mut s,
        &post("/v1/messages", &rec.addr().to_string(), &big),
        &big,
    );
    assert_eq!(st, 413);
    std::thread::sleep(Duration::from_millis(50));
    let recs = rec.records();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].body_truncated);
}
