//! The gateway in front of an in-process mock upstream, over real HTTP on loopback.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLAUDE_UA: &str = "claude-cli/2.1.332 (external, cli)";

fn anthropic_body(stream: bool) -> String {
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"say hello"}}]}}"#
    )
}

// ---------------------------------------------------------------------------------------------
// Every API, streaming and not
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_api_streaming_and_not() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let cases: &[(&str, &str, String, &str)] = &[
        (
            "/v1/messages?beta=true",
            "/v1/messages?beta=true",
            anthropic_body(false),
            "anthropic_messages",
        ),
        (
            "/v1/messages",
            "/v1/messages",
            anthropic_body(true),
            "anthropic_messages",
        ),
        (
            "/v1/messages/count_tokens",
            "/v1/messages/count_tokens",
            r#"{"model":"claude-sonnet-4-5","messages":[]}"#.to_string(),
            "anthropic_count_tokens",
        ),
        (
            "/v1/chat/completions",
            "/v1/chat/completions",
            r#"{"model":"gpt-5","messages":[]}"#.to_string(),
            "openai_chat",
        ),
        (
            "/v1/chat/completions",
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"messages":[]}"#.to_string(),
            "openai_chat",
        ),
        (
            "/v1/responses",
            "/v1/responses",
            r#"{"model":"gpt-5","input":"hi"}"#.to_string(),
            "openai_responses",
        ),
        (
            "/v1/responses",
            "/v1/responses",
            r#"{"model":"gpt-5","stream":true,"input":"hi"}"#.to_string(),
            "openai_responses",
        ),
        (
            "/chat/completions",
            "/v1/chat/completions",
            r#"{"model":"gpt-5","messages":[]}"#.to_string(),
            "openai_chat",
        ),
    ];
    for (path, upstream_path, body, _api) in cases {
        let (status, headers, resp) = send(
            gw.addr,
            "POST",
            path,
            &[
                JSON,
                ("x-api-key", "sk-ant-caller"),
                ("user-agent", CLAUDE_UA),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&resp));
        let seen = mock.last();
        assert_eq!(seen.path_and_query, *upstream_path);
        assert_eq!(
            seen.body,
            Bytes::from(body.clone()),
            "{path}: body must arrive byte for byte"
        );
        assert_eq!(
            seen.headers["x-api-key"], "sk-ant-caller",
            "anonymous mode passes the caller's key"
        );
        assert!(headers.contains_key("x-airlock-request-id"));
        if body.contains("\"stream\":true") {
            assert_eq!(headers["content-type"], "text/event-stream");
            assert!(String::from_utf8_lossy(&resp).contains("message_stop"));
        } else {
            assert_eq!(headers["x-upstream-marker"], "json");
            assert_eq!(
                headers["request-id"], "req_upstream_1",
                "upstream response headers pass through"
            );
        }
    }
    let m = metrics(gw.addr).await;
    for api in [
        "anthropic_messages",
        "anthropic_count_tokens",
        "openai_chat",
        "openai_responses",
    ] {
        assert!(
            m.contains(&format!(
                "airlock_requests_total{{api=\"{api}\",tool=\"claude-code\",version=\"2.1.332\""
            )),
            "{api} in\n{m}"
        );
    }
}

#[tokio::test]
async fn models_answered_from_config_in_both_shapes() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (status, _, body) = send(gw.addr, "GET", "/v1/models", &[], Bytes::new()).await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["id"], "gpt-5");
    assert_eq!(v["data"][1]["owned_by"], "openai");
    let (status, _, body) = send(
        gw.addr,
        "GET",
        "/v1/models",
        &[("anthropic-version", "2023-06-01")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["id"], "claude-sonnet-4-5");
    assert_eq!(v["has_more"], false);
    assert!(
        mock.seen().is_empty(),
        "models are answered without the upstream"
    );
}

#[tokio::test]
async fn upstream_status_and_error_body_reach_the_agent_unchanged() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (status, headers, body) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("x-mock", "status-429")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
    assert!(
        !headers.contains_key("x-airlock-error-source"),
        "not Airlock's error"
    );
    assert_eq!(
        &body[..],
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Real agent captures: identification and byte-exact forwarding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replayed_captures_arrive_byte_identical_and_are_identified() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let files = [
        (
            "claude-code-2.1.332.jsonl",
            "claude-code",
            "2.1.332",
            "anthropic_messages",
        ),
        (
            "codex-0.169.0.jsonl",
            "codex",
            "0.169.0",
            "openai_responses",
        ),
        (
            "qwen-code-0.24.4.jsonl",
            "qwen-code",
            "0.24.4",
            "openai_chat",
        ),
        (
            "opencode-1.18.33.jsonl",
            "opencode",
            "1.18.33",
            "openai_chat",
        ),
        ("gemini-cli-0.61.0.jsonl", "gemini-cli", "0.61.0", "gemini"),
    ];
    let client = client();
    let mut replayed = 0;
    for (file, tool, version, api) in files {
        let reqs = captured(file);
        assert!(!reqs.is_empty(), "{file} has direct requests");
        for c in reqs {
            let before = mock.seen().len();
            let resp = client.request(captured_request(&c, gw.addr)).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                status,
                200,
                "{file} {}: {}",
                c.target,
                String::from_utf8_lossy(&body)
            );
            let seen = mock.seen();
            assert_eq!(
                seen.len(),
                before + 1,
                "{file}: exactly one upstream request"
            );
            let up = seen.last().unwrap();
            assert_eq!(
                up.body,
                Bytes::from(c.body.clone()),
                "{file} {}: body byte-identical",
                c.target
            );
            let expected_path = c.target.clone();
            assert_eq!(
                up.path_and_query, expected_path,
                "{file}: path and query kept"
            );
            for (name, value) in c.headers.iter().filter(|(n, _)| !is_hop_header(n)) {
                let got: Vec<_> = up.headers.get_all(name.as_str()).iter().collect();
                assert_eq!(got.len(), 1, "{file}: header {name} arrives once");
                assert_eq!(
                    got[0].as_bytes(),
                    value.as_bytes(),
                    "{file}: header {name} verbatim"
                );
            }
            replayed += 1;
        }
        let m = metrics(gw.addr).await;
        let series =
            format!("airlock_requests_total{{api=\"{api}\",tool=\"{tool}\",version=\"{version}\"");
        assert!(
            m.contains(&series),
            "{file}: identified as {tool} {version}; metrics:\n{m}"
        );
    }
    assert_eq!(replayed, 8);
}

#[tokio::test]
async fn gemini_without_upstream_gets_google_shaped_404() {
    let mock = Mock::start().await;
    // Only Anthropic and OpenAI upstreams.
    let cfg = base_config(mock.addr, "").replace(
        "[[upstream]]\nname = \"gemini\"\napi = \"gemini\"\nbase_url = \"http://",
        "[[upstream]]\nname = \"gemini-off\"\napi = \"openai\"\nbase_url = \"http://",
    );
    let gw = start_gateway(&cfg).await;
    let c = captured("gemini-cli-0.61.0.jsonl").remove(0);
    let (status, _, body) = replay(&c, gw.addr).await;
    assert_eq!(status, 404);
    let v = json(&body);
    assert_eq!(v["error"]["code"], 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert!(v["error"]["message"].as_str().unwrap().contains("Gemini"));
    assert!(mock.seen().is_empty());
    let m = metrics(gw.addr).await;
    assert!(
        m.contains("tool=\"gemini-cli\",version=\"0.61.0\""),
        "identified even when not forwarded"
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming: events arrive one by one; a client disconnect cancels the upstream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn streamed_events_arrive_one_by_one() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (tx, resp_fut) = mock
        .stream_through(gw.addr, "/v1/messages", &[], anthropic_body(true))
        .await;
    // The response head only comes once the upstream answered; the first event follows.
    tx.send(Bytes::from_static(
        b"event: message_start\ndata: {\"n\":1}\n\n",
    ))
    .await
    .unwrap();
    let resp = resp_fut.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    for n in 1..=5u32 {
        if n > 1 {
            tx.send(Bytes::from(format!(
                "event: content_block_delta\ndata: {{\"n\":{n}}}\n\n"
            )))
            .await
            .unwrap();
        }
        // The mock has sent exactly event n and waits: the client must see it now, not at the end.
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap_or_else(|_| {
                panic!("event {n} did not arrive while the upstream stream was still open")
            })
            .unwrap()
            .unwrap();
        let data = frame.into_data().unwrap();
        assert!(
            String::from_utf8_lossy(&data).contains(&format!("{{\"n\":{n}}}")),
            "event {n}"
        );
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test]
async fn client_disconnect_cancels_upstream() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (tx, resp_fut) = mock
        .stream_through(
            gw.addr,
            "/v1/chat/completions",
            &[],
            r#"{"model":"gpt-5","stream":true,"messages":[]}"#,
        )
        .await;
    tx.send(Bytes::from_static(b"data: {\"n\":1}\n\n"))
        .await
        .unwrap();
    let resp = resp_fut.await.unwrap();
    let mut body = resp.into_body();
    let _ = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    // The agent hangs up mid-stream.
    drop(body);
    // The upstream side sees its response body dropped (the connection closed) promptly.
    tokio::time::timeout(Duration::from_secs(5), tx.closed())
        .await
        .expect("upstream request cancelled after the client went away");
    // And the gateway keeps serving.
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 200);
    let m = metrics(gw.addr).await;
    assert!(m.contains("api=\"openai_chat\""), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Policy: denied tools, versions and models in the API's own shape; unknown tools by default
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn advisory_version_denied_in_anthropic_shape() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (status, headers, body) = send(
        gw.addr,
        "POST",
        "/v1/messages?beta=true",
        &[JSON, ("user-agent", "claude-cli/2.1.150 (external, cli)")],
        anthropic_body(true),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-airlock-error-source"], "client");
    let v = json(&body);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "permission_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2.1.150"), "{msg}");
    assert!(msg.contains("2.1.198"), "names the fixed version: {msg}");
    assert!(
        mock.seen().is_empty(),
        "a denied request never reaches the upstream"
    );
    // The fixed version passes.
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", "claude-cli/2.1.198 (external, cli)")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 200);
    let m = metrics(gw.addr).await;
    assert!(m.contains("tool=\"claude-code\",version=\"2.1.150\",model=\"claude-sonnet-4-5\",decision=\"deny\",status=\"403\""), "{m}");
}

const RULES: &str = r#"
[policy]
unknown_tools = "deny"
approved_alternatives = ["Claude Code"]

[[policy.rule]]
id = "no-gpt4o"
models = ["gpt-4o*"]
action = "deny"
reason = "retired model"
alternative = "gpt-5"

[[policy.rule]]
id = "old-codex"
tools = ["codex"]
versions = "<0.100.0"
action = "deny"
reason = "too old"
alternative = "Codex CLI 0.169.0"
"#;

#[tokio::test]
async fn denied_model_tool_and_unknown_in_openai_shape() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, RULES)).await;
    // Model rule, OpenAI Chat shape.
    let (status, _, body) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("user-agent", "QwenCode/0.24.4 (linux; x64)")],
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(status, 403);
    let v = json(&body);
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(v["error"]["code"], "policy_denied");
    assert!(v["error"]["param"].is_null());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("retired model") && msg.contains("gpt-5"),
        "{msg}"
    );
    // Tool version rule, Responses API.
    let (status, _, body) = send(
        gw.addr,
        "POST",
        "/v1/responses",
        &[
            JSON,
            ("user-agent", "codex_cli_rs/0.50.0 (Mac OS 15; arm64)"),
        ],
        r#"{"model":"gpt-5","input":"hi"}"#,
    )
    .await;
    assert_eq!(status, 403);
    let msg = json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("too old") && msg.contains("0.169.0"), "{msg}");
    // Unknown tool follows the default (deny here).
    let (status, _, body) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", "curl/8.0")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(json(&body)["error"]["type"], "permission_error");
    // Allowed: a current codex.
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/responses",
        &[
            JSON,
            ("user-agent", "codex_cli_rs/0.169.0 (Mac OS 15; arm64)"),
        ],
        r#"{"model":"gpt-5","input":"hi"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn unknown_tools_allowed_by_default() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", "curl/8.0")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 200);
    assert!(metrics(gw.addr).await.contains("tool=\"unknown\""));
}

// ---------------------------------------------------------------------------------------------
// Bad input and bad upstreams: clear errors in the right shape, and the server keeps serving
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_clear_errors_and_server_keeps_serving() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    // Malformed JSON, Anthropic shape.
    let (s, h, b) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        r#"{"model": "x", "messages": [ "#,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(h["x-airlock-error-source"], "client");
    let v = json(&b);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    // Wrong types, OpenAI shape.
    let (s, _, b) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        r#"{"model": 5}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(json(&b)["error"]["code"], "invalid_request");
    // Wrong content type.
    let (s, _, b) = send(
        gw.addr,
        "POST",
        "/v1/responses",
        &[("content-type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(s, 415);
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text/plain")
    );
    // Oversized (limit is 1 MiB in the test config), with and without Content-Length.
    let big = format!(r#"{{"model":"gpt-5","input":"{}"}}"#, "a".repeat(1_100_000));
    let (s, _, b) = send(gw.addr, "POST", "/v1/responses", &[JSON], big.clone()).await;
    assert_eq!(s, 413);
    assert_eq!(json(&b)["error"]["code"], "request_too_large");
    let (s, _, b) = send(gw.addr, "POST", "/v1/messages", &[JSON], big).await;
    assert_eq!(s, 413);
    assert_eq!(json(&b)["error"]["type"], "request_too_large");
    // Unknown path and wrong method.
    let (s, _, b) = send(gw.addr, "POST", "/v1/embeddings", &[JSON], "{}").await;
    assert_eq!(s, 404);
    assert_eq!(json(&b)["error"]["code"], "not_found");
    let (s, _, b) = send(gw.addr, "GET", "/v1/messages", &[], Bytes::new()).await;
    assert_eq!(s, 405);
    assert_eq!(json(&b)["type"], "error");
    // Nothing reached the upstream, and the server still serves.
    assert!(mock.seen().is_empty());
    let (s, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        anthropic_body(false),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn upstream_down_slow_and_garbage() {
    // Down: a port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Garbage: answers anything with bytes that are not HTTP.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01garbage\r\n\r\n")
                    .await;
            });
        }
    });
    let mock = Mock::start().await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[upstream]]
name = "anthropic"
api = "anthropic"
base_url = "http://{closed}"
retries = 1
connect_timeout_ms = 500

[[upstream]]
name = "garbage"
api = "openai"
models = ["garbage-*"]
base_url = "http://{garbage_addr}/v1"

[[upstream]]
name = "openai"
api = "openai"
base_url = "http://{}/v1"
first_byte_timeout_ms = 300
"#,
        mock.addr
    );
    let gw = start_gateway(&cfg).await;
    let (s, h, b) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        anthropic_body(false),
    )
    .await;
    assert_eq!(s, 502);
    assert_eq!(h["x-airlock-error-source"], "upstream");
    let v = json(&b);
    assert_eq!(v["error"]["type"], "api_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("could not connect") && msg.contains("2 attempt"),
        "{msg}"
    );

    let (s, h, b) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        r#"{"model":"garbage-1","messages":[]}"#,
    )
    .await;
    assert_eq!(s, 502);
    assert_eq!(h["x-airlock-error-source"], "upstream");
    assert_eq!(json(&b)["error"]["code"], "upstream_unavailable");

    let (s, _, b) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("x-mock", "slow")],
        r#"{"model":"gpt-5"}"#,
    )
    .await;
    assert_eq!(s, 504);
    assert_eq!(json(&b)["error"]["code"], "upstream_timeout");

    let (s, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        r#"{"model":"gpt-5"}"#,
    )
    .await;
    assert_eq!(s, 200, "still serving");
    let m = metrics(gw.addr).await;
    assert!(
        m.contains("airlock_upstream_errors_total{upstream=\"anthropic\",reason=\"connect\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn idle_upstream_mid_stream_is_cut() {
    let mock = Mock::start().await;
    let cfg = base_config(mock.addr, "").replace("idle_timeout_ms = 3000", "idle_timeout_ms = 300");
    let gw = start_gateway(&cfg).await;
    let (tx, resp_fut) = mock
        .stream_through(gw.addr, "/v1/messages", &[], anthropic_body(true))
        .await;
    tx.send(Bytes::from_static(b"event: ping\ndata: {}\n\n"))
        .await
        .unwrap();
    let resp = resp_fut.await.unwrap();
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    let ended_in_error = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
        {
            Some(Ok(f)) => seen.extend_from_slice(f.data_ref().unwrap()),
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    assert!(
        ended_in_error,
        "the stream is aborted, not ended cleanly, when the upstream goes quiet"
    );
    // Before the cut, the agent is told why, as an Anthropic error event.
    let text = String::from_utf8(seen).unwrap();
    let event = text
        .split("\n\n")
        .find(|e| e.starts_with("event: error\n"))
        .unwrap_or_else(|| panic!("no error event in {text:?}"));
    let v: serde_json::Value =
        serde_json::from_str(event.strip_prefix("event: error\ndata: ").unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idle_timeout_ms"),
        "{v}"
    );
    assert!(
        text.starts_with("event: ping\n"),
        "the upstream's events came first"
    );
    drop(tx);
}

// ---------------------------------------------------------------------------------------------
// Limits: header size, slow clients, connections
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_headers_and_slow_clients_are_cut_off() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    // 40 KiB of headers against a 16 KiB limit.
    let big = "x".repeat(40 * 1024);
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!("POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A client that never finishes its request head is disconnected after header_timeout_ms.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "slow client was not disconnected");
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        anthropic_body(false),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let mock = Mock::start().await;
    let cfg = base_config(mock.addr, "").replace(
        "max_body_bytes = 1048576",
        "max_body_bytes = 1048576\nmax_connections = 2",
    );
    let gw = start_gateway(&cfg).await;
    let _a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("max_connections"));
}

// ---------------------------------------------------------------------------------------------
// Keys, credentials and anonymous mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keyed_mode_replaces_the_credential_and_revocation_applies_live() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("anthropic.key");
    std::fs::write(&cred, "sk-ant-upstream-secret\n").unwrap();
    let cfg = base_config(mock.addr, "").replacen(
        "credential = { passthrough = true }",
        &format!("credential = {{ file = {:?} }}", cred.display().to_string()),
        1,
    );
    let mut key = String::new();
    let mut key_id = String::new();
    let gw = start_gateway_with(&cfg, |data| {
        let store = airlock_gateway::KeyStore::open(data).unwrap();
        let k = store.create("alice", Some("payments")).unwrap();
        key = k.key.expose().to_string();
        key_id = k.info.id.clone();
    })
    .await;
    // No key: 401 in Anthropic shape.
    let (s, _, b) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("x-api-key", "sk-ant-vendor")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(json(&b)["error"]["type"], "authentication_error");
    // Airlock key in x-api-key: forwarded with the upstream's credential instead.
    let (s, _, b) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("x-api-key", key.as_str())],
        anthropic_body(false),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let seen = mock.last();
    assert_eq!(seen.headers["x-api-key"], "sk-ant-upstream-secret");
    assert!(
        !seen
            .headers
            .iter()
            .any(|(_, v)| v.as_bytes() == key.as_bytes()),
        "the Airlock key never leaves"
    );
    // Authorization: Bearer works too; OpenAI upstream has no credential configured → clear 500.
    let bearer = format!("Bearer {key}");
    let (s, h, b) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("authorization", bearer.as_str())],
        r#"{"model":"gpt-5"}"#,
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(h["x-airlock-error-source"], "airlock");
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no credential configured")
    );
    // Revoke while running: refused within the reload poll.
    airlock_gateway::KeyStore::open(&gw.dir.path().join("data"))
        .unwrap()
        .revoke(&key_id)
        .unwrap();
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, _, _) = send(
            gw.addr,
            "POST",
            "/v1/messages",
            &[JSON, ("x-api-key", key.as_str())],
            anthropic_body(false),
        )
        .await;
        if s == 401 {
            refused = true;
            break;
        }
    }
    assert!(refused, "revoked key still accepted after 4 s");
}

#[tokio::test]
async fn anonymous_mode_is_refused_off_loopback() {
    let mock = Mock::start().await;
    let err = start_error(&base_config(mock.addr, "").replace("127.0.0.1:0", "0.0.0.0:0"));
    assert!(
        matches!(err, airlock_gateway::GatewayError::AnonymousNonLoopback(_)),
        "{err}"
    );
    assert!(err.to_string().contains("airlock keys create"));
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn config_file_change_reloads_and_invalid_config_is_rejected() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let req = || {
        send(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[JSON],
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
    };
    assert_eq!(req().await.0, 200);
    // Keep a connection open across the reload: it must keep working.
    std::fs::write(&gw.config_path, base_config(mock.addr, RULES)).unwrap();
    let mut denied = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if req().await.0 == 403 {
            denied = true;
            break;
        }
    }
    assert!(denied, "new policy not in force after 4 s");
    // An invalid file is rejected; the previous config stays.
    std::fs::write(&gw.config_path, "[server]\nlisten = 5\nuptream = 1\n").unwrap();
    let mut rejected = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if metrics(gw.addr)
            .await
            .contains("airlock_config_reloads_total{result=\"rejected\"} 1")
        {
            rejected = true;
            break;
        }
    }
    assert!(rejected);
    assert_eq!(req().await.0, 403, "old config still in force");
    // reload() reports the error too.
    assert!(gw.gateway.reload().is_err());
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    assert_eq!(
        send(gw.addr, "GET", "/healthz", &[], Bytes::new()).await.0,
        200
    );
    assert_eq!(
        send(gw.addr, "GET", "/readyz", &[], Bytes::new()).await.0,
        200
    );
    send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", CLAUDE_UA)],
        anthropic_body(false),
    )
    .await;
    let m = metrics(gw.addr).await;
    for name in [
        "airlock_requests_total",
        "airlock_request_duration_seconds_bucket",
        "airlock_gateway_overhead_seconds_bucket",
        "airlock_upstream_first_byte_seconds_bucket",
        "airlock_request_bytes_total",
        "airlock_response_bytes_total",
        "airlock_connections_open",
        "airlock_inflight_body_limit_bytes 536870912\n",
        "airlock_inflight_body_bytes 0\n",
    ] {
        assert!(m.contains(name), "{name} missing");
    }
    assert!(m.contains("decision=\"allow\",status=\"200\""));
    // The answer's end waited for its audit record; the wait is a histogram without labels.
    assert!(
        m.contains("airlock_audit_commit_wait_seconds_count 1\n"),
        "{}",
        m.lines()
            .filter(|l| l.contains("audit_commit_wait"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(m.contains("airlock_audit_commit_wait_seconds_bucket{le=\"+Inf\"} 1\n"));
}

/// A gateway whose bodies may be 64 KiB, with 100 KiB of them in flight at once.
async fn small_budget_gateway() -> (Mock, Gw) {
    let mock = Mock::start().await;
    let config = base_config(mock.addr, "").replace(
        "max_body_bytes = 1048576",
        "max_body_bytes = 65536\nmax_inflight_body_bytes = 102400",
    );
    let gw = start_gateway(&config).await;
    (mock, gw)
}

/// An Anthropic request of about 60 KB.
fn big() -> String {
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(60_000)
    )
}

/// `server.max_inflight_body_bytes` bounds the request bodies held at once: while one 60 KB
/// request waits on a slow upstream, a second (with a content-length, or chunked) is answered
/// 503 `overloaded_error` with `retry-after`; once the first is gone (its client hung up),
/// the budget is free again.
#[tokio::test]
async fn in_flight_body_budget() {
    let (mock, gw) = small_budget_gateway().await;
    let addr = gw.addr;
    let body = big();
    let first = tokio::spawn(async move {
        send(
            addr,
            "POST",
            "/v1/messages",
            &[JSON, ("user-agent", CLAUDE_UA), ("x-mock", "slow")],
            body,
        )
        .await
    });
    // The first request reaches the (slow) upstream and holds its 60 KB.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while mock.seen.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "first request never forwarded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, headers, answer) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", CLAUDE_UA)],
        big(),
    )
    .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_inflight_body_bytes")
    );
    // Chunked (no content-length): refused as its chunks exceed the budget.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let chunk = big();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nuser-agent: {CLAUDE_UA}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.contains("overloaded_error"));
    assert_eq!(
        mock.seen.lock().unwrap().len(),
        1,
        "neither refused request was forwarded"
    );
    // The first client hangs up: its reservation goes with it.
    first.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = send(
            gw.addr,
            "POST",
            "/v1/messages",
            &[JSON, ("user-agent", CLAUDE_UA)],
            big(),
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(std::time::Instant::now() < deadline, "budget never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The budget counts bytes received, not bytes announced: a client that announces 60 KB and
/// stalls does not hold the budget a real request needs.
#[tokio::test]
async fn announced_but_unsent_bodies_hold_no_budget() {
    let (_mock, gw) = small_budget_gateway().await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(
            format!("POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nuser-agent: {CLAUDE_UA}\r\ncontent-length: 60000\r\n\r\n{{\"model\":").as_bytes(),
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    let body = big();
    let (status, _, answer) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON, ("user-agent", CLAUDE_UA)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    drop(stalled);
}

#[test]
fn in_flight_budget_below_one_body_is_refused() {
    let config = base_config("127.0.0.1:9".parse().unwrap(), "").replace(
        "max_body_bytes = 1048576",
        "max_body_bytes = 1048576\nmax_inflight_body_bytes = 1024",
    );
    let e = start_error(&config).to_string();
    assert!(e.contains("server.max_inflight_body_bytes"), "{e}");
}
