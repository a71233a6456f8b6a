//! The audit trail written by the gateway: hash-chained records of every exchange (a forwarded
//! one has a request record written ahead, then its exchange record), verifiable
//! afterwards with `airlock_audit::verify_dir`.

mod common;

use airlock_audit::{AuditFilter, Decision, SqliteStore, Store, query, verify_dir};
use common::*;
use http_body_util::BodyExt;

const POLICY: &str = r#"
[redaction]
rules = { github-pat = "block" }

[[policy.rule]]
id = "no-gpt4o"
models = ["gpt-4o*"]
action = "deny"
reason = "retired model"
"#;

#[tokio::test]
async fn every_exchange_is_audited_and_the_chain_verifies() {
    let mock = Mock::start().await;
    let mut gw = start_gateway(&base_config(mock.addr, POLICY)).await;
    let data = gw.data_dir();

    // 1. A real claude-code request, allowed and forwarded.
    let c = captured("claude-code-2.1.332.jsonl")
        .into_iter()
        .find(|c| c.target.starts_with("/v1/messages"))
        .unwrap();
    let (status, _, _) = replay(&c, gw.addr).await;
    assert_eq!(status, 200);
    // Write-ahead: the request record was queued when the request was sent upstream, and the
    // end of the answer is released only after it is committed, so it is readable from
    // another connection with the gateway still running. (The writer is usually fast enough
    // that this also holds without the wait: it does not prove the wait alone.)
    let early = query(
        &SqliteStore::open_existing(&data).unwrap(),
        &AuditFilter::default(),
    )
    .unwrap();
    assert!(
        !early.is_empty(),
        "request record committed before the answer ended"
    );
    assert_eq!(early[0].kind, airlock_audit::RecordKind::Request);
    assert_eq!(early[0].tool.as_deref(), Some("claude-code"));
    assert_eq!(early[0].status, None, "the request side has no status yet");

    // 2. Denied by policy (model rule).
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("user-agent", "QwenCode/0.24.4 (linux; x64)")],
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(status, 403);

    // 3. Blocked because of its content.
    let token = github_token();
    let (status, _, body) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("user-agent", "QwenCode/0.24.4 (linux; x64)")],
        format!(r#"{{"model":"gpt-5","messages":[{{"role":"user","content":"use {token}"}}]}}"#),
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    // The log's counters are on /metrics: the forwarded request's two records and the two
    // refusals' one each, all committed (the last answer was held for its own record, and the
    // detached end record before it was committed with it or earlier).
    let m = metrics(gw.addr).await;
    assert!(m.contains("\nairlock_audit_records_total 4\n"), "{m}");
    assert!(m.contains("\nairlock_audit_lost_records_total 0\n"), "{m}");
    assert!(
        m.contains("\nairlock_audit_failed_records_total 0\n"),
        "{m}"
    );

    gw.stop().await;

    let report = verify_dir(&data, &[], None).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 4, "{report:?}");

    let store = SqliteStore::open_existing(&data).unwrap();
    let records = query(&store, &AuditFilter::default()).unwrap();
    let exchanges: Vec<_> = records
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Exchange)
        .collect();
    assert_eq!(exchanges.len(), 3, "{exchanges:#?}");
    // Only the forwarded request has a request record, first in the chain, and its exchange
    // record names the same request.
    let requests: Vec<_> = records
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Request)
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].seq, 1);
    assert_eq!(requests[0].request_id, exchanges[0].request_id);
    assert_eq!(requests[0].decision, Some(Decision::Allowed));
    assert_eq!(requests[0].request_bytes, c.body.len() as u64);

    let allowed = exchanges[0];
    assert_eq!(allowed.tool.as_deref(), Some("claude-code"));
    assert_eq!(allowed.tool_version.as_deref(), Some("2.1.332"));
    assert_eq!(allowed.decision, Some(Decision::Allowed));
    assert_eq!(allowed.api.as_deref(), Some("anthropic_messages"));
    assert_eq!(allowed.upstream.as_deref(), Some("anthropic"));
    assert_eq!(allowed.status, Some(200));
    assert!(
        allowed.agent_session_id.is_some(),
        "session id from headers"
    );
    assert_eq!(allowed.request_bytes, c.body.len() as u64);
    assert!(allowed.response_bytes > 0);
    assert!(allowed.latency_total_us.is_some());

    let denied = exchanges[1];
    assert_eq!(denied.tool.as_deref(), Some("qwen-code"));
    assert_eq!(denied.decision, Some(Decision::Denied));
    assert_eq!(denied.decision_rule.as_deref(), Some("no-gpt4o"));
    assert_eq!(denied.status, Some(403));

    let blocked = exchanges[2];
    assert_eq!(blocked.decision, Some(Decision::Blocked));
    assert_eq!(blocked.decision_rule.as_deref(), Some("github-pat"));
    assert_eq!(blocked.findings.len(), 1);
    assert_eq!(blocked.findings[0].rule_id, "github-pat");
    assert_eq!(blocked.findings[0].locations, vec!["messages[0].content"]);

    // Never the value: not in any record.
    for r in &records {
        let text = serde_json::to_string(r).unwrap();
        assert!(!text.contains(&token));
    }
}

#[tokio::test]
async fn audit_disabled_writes_nothing() {
    let mock = Mock::start().await;
    let mut gw = start_gateway(&base_config(mock.addr, "[audit]\nenabled = false\n")).await;
    let data = gw.data_dir();
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        r#"{"model":"gpt-5","messages":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
    gw.stop().await;
    assert!(!data.join(airlock_audit::DB_FILE).exists());
}

// ---------------------------------------------------------------------------------------------
// Token usage and cost, bodies, admin endpoints.

/// A mock upstream with the vendors' real response shapes and usage fields: Anthropic
/// Messages, OpenAI Chat Completions and Responses, each as JSON or (with `"stream":true`) as
/// SSE sent in 7-byte frames, so that events and lines are split across frames.
async fn usage_mock() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let stream = String::from_utf8_lossy(&body).contains("\"stream\":true");
                    let (ct, text) = usage_answer(&path, stream);
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    tokio::spawn(async move {
                        for chunk in text.as_bytes().chunks(7) {
                            if tx.send(bytes::Bytes::copy_from_slice(chunk)).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", ct)
                            .body(ChannelBody(rx))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn sse(events: &[&str]) -> String {
    events
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n"))
        .collect()
}

fn usage_answer(path: &str, stream: bool) -> (&'static str, String) {
    const ANTHROPIC_USAGE: &str = r#"{"input_tokens":1200,"cache_creation_input_tokens":300,"cache_read_input_tokens":4000,"output_tokens":80,"service_tier":"standard"}"#;
    const CHAT_USAGE: &str = r#"{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":400,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}"#;
    const RESPONSES_USAGE: &str = r#"{"input_tokens":2000,"input_tokens_details":{"cached_tokens":1500},"output_tokens":500,"output_tokens_details":{"reasoning_tokens":300},"total_tokens":2500}"#;
    match (path, stream) {
        ("/v1/messages", false) => (
            "application/json",
            format!(
                r#"{{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"Hi."}}],"stop_reason":"end_turn","usage":{ANTHROPIC_USAGE}}}"#
            ),
        ),
        ("/v1/messages", true) => (
            "text/event-stream",
            [
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi.\"}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":80}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            ]
            .concat(),
        ),
        ("/v1/chat/completions", false) => (
            "application/json",
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5-2025-08-07","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi."}},"finish_reason":"stop"}}],"usage":{CHAT_USAGE}}}"#
            ),
        ),
        ("/v1/chat/completions", true) => (
            "text/event-stream",
            sse(&[
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi."},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
                &format!(r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{CHAT_USAGE}}}"#),
                "[DONE]",
            ]),
        ),
        ("/v1/responses", false) => (
            "application/json",
            format!(
                r#"{{"id":"resp_1","object":"response","status":"completed","model":"gpt-5-2025-08-07","output":[{{"type":"message","role":"assistant","content":[{{"type":"output_text","text":"Hi."}}]}}],"usage":{RESPONSES_USAGE}}}"#
            ),
        ),
        ("/v1/responses", true) => (
            "text/event-stream",
            [
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n".to_string(),
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi.\"}\n\n".to_string(),
                format!("event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{RESPONSES_USAGE}}}}}\n\n"),
            ]
            .concat(),
        ),
        _ => ("application/json", "{}".to_string()),
    }
}

fn exchanges(data: &std::path::Path) -> Vec<airlock_audit::AuditRecord> {
    query(
        &SqliteStore::open_existing(data).unwrap(),
        &AuditFilter::default(),
    )
    .unwrap()
    .into_iter()
    .filter(|r| r.kind == airlock_audit::RecordKind::Exchange)
    .collect()
}

#[tokio::test]
async fn usage_and_cost_are_recorded_for_each_api_streamed_or_not() {
    let up = usage_mock().await;
    let mut gw = start_gateway(&base_config(up, "")).await;
    let data = gw.data_dir();
    let cases: [(&str, &str); 6] = [
        (
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":8,"stream":true,"messages":[]}"#,
        ),
        ("/v1/chat/completions", r#"{"model":"gpt-5","messages":[]}"#),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
        ),
        ("/v1/responses", r#"{"model":"gpt-5","input":"hi"}"#),
        (
            "/v1/responses",
            r#"{"model":"gpt-5","stream":true,"input":"hi"}"#,
        ),
    ];
    for (path, body) in cases {
        let (status, _, b) = send(gw.addr, "POST", path, &[JSON], body).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&b));
    }
    gw.stop().await;
    let recs = exchanges(&data);
    assert_eq!(recs.len(), 6);
    let usage: Vec<airlock_audit::Usage> = recs
        .iter()
        .map(|r| {
            r.usage
                .clone()
                .unwrap_or_else(|| panic!("no usage: {r:#?}"))
        })
        .collect();
    // Anthropic, JSON and stream (message_start + message_delta's final output count).
    // Sonnet list price: 1200 × 3 + 80 × 15 + 4000 × 0.30 + 300 × 3.75 micro-dollars.
    for u in &usage[0..2] {
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (Some(1200), Some(80), Some(4000), Some(300))
        );
        assert_eq!(u.cost_micro_usd, Some(3600 + 1200 + 1200 + 1125));
    }
    // OpenAI Chat: cached tokens are part of prompt_tokens and billed at the cache price.
    for u in &usage[2..4] {
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (Some(1000), Some(300), Some(400), Some(256))
        );
        assert_eq!(u.cost_micro_usd, Some(600 * 5 / 4 + 50 + 3000));
    }
    // Responses: response.completed (stream) or the body's usage.
    for u in &usage[4..6] {
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.reasoning_tokens
            ),
            (Some(2000), Some(500), Some(1500), Some(300))
        );
        // 500 × 1.25 + 1500 × 0.125 + 500 × 10 = 5812.5 → 5813.
        assert_eq!(u.cost_micro_usd, Some(5813));
    }
    let report = verify_dir(&data, &[], None).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn stored_bodies_are_the_redacted_ones_never_the_secret() {
    let mock = Mock::start().await;
    let mut gw = start_gateway(&base_config(
        mock.addr,
        "[audit]\nstore_bodies = true\nmax_body_bytes = 65536\n",
    ))
    .await;
    let data = gw.data_dir();
    let token = github_token();
    let req = serde_json::json!({
        "model": "gpt-5",
        "messages": [{"role": "user", "content": format!("push with token {token} please")}]
    })
    .to_string();
    let (status, _, body) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("x-mock", "echo-GITHUB")],
        req.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // The agent got its value back...
    assert!(String::from_utf8_lossy(&body).contains(&token));
    // ...a streamed answer too.
    let c = with_mock(&claude_with_secrets(), "echo-GITHUB");
    let (status, _, streamed) = replay(&c, gw.addr).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&streamed).contains(&token));
    gw.stop().await;

    let store = SqliteStore::open_existing(&data).unwrap();
    let recs = exchanges(&data);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let rq = r.request_body.as_ref().expect("request body stored");
        let rs = r.response_body.as_ref().expect("response body stored");
        let stored_rq = airlock_audit::BodyCapture::decompress(
            &store
                .body(r.seq, airlock_audit::BodyKind::Request)
                .unwrap()
                .unwrap(),
            rq.captured_bytes,
        )
        .unwrap();
        let stored_rs = airlock_audit::BodyCapture::decompress(
            &store
                .body(r.seq, airlock_audit::BodyKind::Response)
                .unwrap()
                .unwrap(),
            rs.captured_bytes,
        )
        .unwrap();
        let (q, s) = (
            String::from_utf8_lossy(&stored_rq),
            String::from_utf8_lossy(&stored_rs),
        );
        assert!(q.contains("[REDACTED_GITHUB"), "{q}");
        assert!(
            !q.contains(&token),
            "the secret is in the stored request body"
        );
        // The response as the upstream sent it: the placeholder, not the restored value.
        assert!(
            s.contains("[REDACTED_GITHUB") || s.contains("REDACTED"),
            "{s}"
        );
        assert!(
            !s.contains(&token),
            "the secret is in the stored response body"
        );
        assert!(!rq.truncated && !rs.truncated);
        assert_eq!(rq.original_bytes, stored_rq.len() as u64);
    }
    // Usage from the streamed echo (message_start + message_delta).
    let u = recs[1].usage.clone().unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (Some(10), Some(12)));
    assert!(verify_dir(&data, &[], None).unwrap().problems.is_empty());
}

#[tokio::test]
async fn stored_bodies_are_capped() {
    let up = usage_mock().await;
    let mut gw = start_gateway(&base_config(
        up,
        "[audit]\nstore_bodies = true\nmax_body_bytes = 64\n",
    ))
    .await;
    let data = gw.data_dir();
    let body = format!(
        r#"{{"model":"gpt-5","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(500)
    );
    let (status, _, answer) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    gw.stop().await;
    let r = &exchanges(&data)[0];
    let (rq, rs) = (
        r.request_body.as_ref().unwrap(),
        r.response_body.as_ref().unwrap(),
    );
    assert_eq!(
        (rq.captured_bytes, rq.original_bytes, rq.truncated),
        (64, body.len() as u64, true)
    );
    assert_eq!(
        (rs.captured_bytes, rs.original_bytes, rs.truncated),
        (64, answer.len() as u64, true)
    );
    // Usage still read from the whole stream, past the cap.
    assert_eq!(r.usage.as_ref().unwrap().output_tokens, Some(300));
}

#[tokio::test]
async fn admin_endpoints_query_and_export_over_http() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, POLICY)).await;
    let qwen = ("user-agent", "QwenCode/0.24.4 (linux; x64)");
    for _ in 0..3 {
        let (s, _, _) = send(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[JSON, qwen],
            r#"{"model":"gpt-5","messages":[]}"#,
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, qwen],
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(s, 403);

    // Records are committed before each answer is released: the endpoint sees all four.
    let (s, h, b) = send(
        gw.addr,
        "GET",
        "/admin/audit/query?decision=denied&since=1h",
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["content-type"], "application/json");
    let arr = json(&b);
    let arr = arr.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["decision"], "denied");
    assert_eq!(arr[0]["tool"], "qwen-code");
    assert_eq!(arr[0]["decision_rule"], "no-gpt4o");

    let (s, _, b) = send(
        gw.addr,
        "GET",
        "/admin/audit/query?tool=qwen-code&format=jsonl&limit=2",
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&b)
        .lines()
        .map(|l| json(l.as_bytes()))
        .collect();
    assert_eq!(lines.len(), 2, "limit keeps the newest two");
    assert_eq!(lines[1]["decision"], "denied");

    let (s, h, b) = send(gw.addr, "GET", "/admin/audit/export", &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/jsonl");
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&b)
        .lines()
        .map(|l| json(l.as_bytes()))
        .collect();
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    // The four exchanges (the three forwarded ones each a request record, then its end), then
    // every read of the log: two queries and this export itself (recorded, and committed,
    // before the log is read).
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    for (r, (api, query)) in recs[7..].iter().zip([
        ("/admin/audit/query", "query: decision=denied&since=1h"),
        (
            "/admin/audit/query",
            "query: tool=qwen-code&format=jsonl&limit=2",
        ),
        ("/admin/audit/export", "(no query string)"),
    ]) {
        assert_eq!(r["kind"], "admin");
        assert_eq!(r["api"], api);
        assert_eq!(r["decision_reason"], query);
        assert_eq!(r["status"], 200);
        assert!(r["client_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let kinds: Vec<&str> = recs[..7]
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "request", "exchange", "request", "exchange", "request", "exchange", "exchange"
        ]
    );
    for pair in recs[..6].chunks(2) {
        assert_eq!(pair[0]["request_id"], pair[1]["request_id"]);
    }
    let (s, _, b) = send(
        gw.addr,
        "GET",
        "/admin/audit/export?after_seq=2&limit=1",
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8_lossy(&b).lines().count(), 1);
    assert_eq!(
        json(
            String::from_utf8_lossy(&b)
                .lines()
                .next()
                .unwrap()
                .as_bytes()
        )["seq"],
        3
    );

    // Bad requests name what was wrong.
    for (q, needle) in [
        ("/admin/audit/query?decision=maybe", "decision"),
        ("/admin/audit/query?colour=red", "colour"),
        ("/admin/audit/query?limit=1000000", "at most"),
        ("/admin/audit/export?format=json", "format"),
        ("/admin/audit/query?since=yesterday", "since"),
    ] {
        let (s, _, b) = send(gw.addr, "GET", q, &[], "").await;
        assert_eq!(s, 400, "{q}");
        let msg = json(&b)["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token_off_loopback() {
    let mock = Mock::start().await;
    // A non-loopback listener needs Airlock keys; the admin token comes from an environment
    // variable cargo sets for every test process (none is set → admin endpoints disabled).
    let cfg = |env: &str| {
        base_config(mock.addr, "").replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"0.0.0.0:0\"\nadmin_token_env = {env:?}"),
            1,
        )
    };
    let with_key = |data: &std::path::Path| {
        airlock_gateway::KeyStore::open(data)
            .unwrap()
            .create("alice", None)
            .unwrap();
    };
    let gw = start_gateway_with(&cfg("AIRLOCK_TEST_UNSET_ADMIN_TOKEN_7f3a"), with_key).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], gw.addr.port()));
    let (s, _, b) = send(addr, "GET", "/admin/audit/query", &[], "").await;
    assert_eq!(s, 401);
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    drop(gw);

    let Ok(token) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let gw = start_gateway_with(&cfg("CARGO_MANIFEST_DIR"), with_key).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], gw.addr.port()));
    let (s, _, _) = send(
        addr,
        "GET",
        "/admin/audit/export",
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(s, 401);
    let bearer = format!("Bearer {token}");
    let (s, _, b) = send(
        addr,
        "GET",
        "/admin/audit/query",
        &[("authorization", bearer.as_str())],
        "",
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    // No exchange yet: the log holds only the two admin accesses, the refused one first.
    let recs = json(&b);
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["kind"], "admin");
    assert_eq!(recs[0]["api"], "/admin/audit/export");
    assert_eq!(recs[0]["decision"], "denied");
    assert_eq!(recs[0]["status"], 401);
    assert_eq!(recs[1]["api"], "/admin/audit/query");
    assert_eq!(recs[1]["decision"], "allowed");
    assert!(
        !b.windows(5).any(|w| w == b"wrong") && !String::from_utf8_lossy(&b).contains(&token),
        "no credential is recorded"
    );
}

#[tokio::test]
async fn a_company_pricing_file_replaces_the_list_prices() {
    let up = usage_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "[[price]]\nmodel = \"gpt-5*\"\ninput = 1.0\noutput = 2.0\ncache_read = 0.5\ninput_includes_cache_read = true\n",
    )
    .unwrap();
    let extra = format!(
        "[audit]\npricing_file = {:?}\n",
        prices.display().to_string()
    );
    let mut gw = start_gateway(&base_config(up, &extra)).await;
    let data = gw.data_dir();
    let (s, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON],
        r#"{"model":"gpt-5","messages":[]}"#,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(
        gw.addr,
        "POST",
        "/v1/messages",
        &[JSON],
        r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}"#,
    )
    .await;
    assert_eq!(s, 200);
    gw.stop().await;
    let recs = exchanges(&data);
    // 600 uncached × 1 + 400 cached × 0.5 + 300 out × 2.
    assert_eq!(
        recs[0].usage.as_ref().unwrap().cost_micro_usd,
        Some(600 + 200 + 600)
    );
    // Not in the company's table: tokens recorded, no cost.
    let u = recs[1].usage.as_ref().unwrap();
    assert_eq!((u.input_tokens, u.cost_micro_usd), (Some(1200), None));

    // A broken table stops the start with the file named.
    std::fs::write(
        &prices,
        "[[price]]\nmodel = \"x\"\ninput = -1.0\noutput = 1.0\n",
    )
    .unwrap();
    let err = start_error(&base_config(up, &extra)).to_string();
    assert!(
        err.contains("prices.toml") && err.contains("input"),
        "{err}"
    );
}

/// A compressed answer (`content-encoding: gzip` or `deflate`, zlib-wrapped or raw) reaches the
/// agent byte for byte, and its token usage is still recorded: the gateway inflates a copy on
/// the side. A body that is not valid for its encoding is relayed as it is, without usage.
#[tokio::test]
async fn usage_is_read_from_compressed_answers() {
    use std::io::Write;
    const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300}}"#;
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(ANSWER.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(ANSWER.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let raw = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(ANSWER.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("gzip", gzip, true),
        ("deflate", zlib, true),
        ("deflate", raw, true),
        ("gzip", b"not gzip at all, just bytes".to_vec(), false),
    ];
    for (encoding, bytes, readable) in cases {
        // Seven-byte chunks: the inflater is fed piece by piece.
        let up = answering_upstream(
            &[
                ("content-type", "application/json"),
                ("content-encoding", encoding),
            ],
            bytes::Bytes::from(bytes.clone()),
            7,
        )
        .await;
        let mut gw = start_gateway(&base_config(up, "")).await;
        let data = gw.data_dir();
        let (status, headers, body) = send(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[JSON, ("accept-encoding", "gzip, deflate")],
            r#"{"model":"gpt-5","messages":[]}"#,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-encoding"], encoding);
        assert_eq!(&body[..], &bytes[..], "relayed byte for byte");
        gw.stop().await;
        let recs = exchanges(&data);
        assert_eq!(recs.len(), 1);
        let usage = recs[0].usage.as_ref();
        if readable {
            let u = usage.unwrap_or_else(|| panic!("{encoding}: no usage"));
            assert_eq!((u.input_tokens, u.output_tokens), (Some(1000), Some(300)));
        } else {
            assert!(usage.is_none_or(|u| u.input_tokens.is_none()), "{usage:?}");
        }
    }
}

/// A client without a valid key cannot make the gateway commit one record per request: beyond
/// an allowance per address its refusals are counted and written as one `throttled` record,
/// so every refused request is still accounted for, and the chain verifies.
#[tokio::test]
async fn refusals_without_a_valid_key_are_recorded_within_an_allowance_then_counted() {
    let mock = Mock::start().await;
    let with_key = |data: &std::path::Path| {
        airlock_gateway::KeyStore::open(data)
            .unwrap()
            .create("alice", None)
            .unwrap();
    };
    let mut gw = start_gateway_with(&base_config(mock.addr, POLICY), with_key).await;
    let data = gw.data_dir();
    const SENT: u64 = 60;
    for _ in 0..SENT {
        let (status, _, _) = send(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[JSON, ("x-api-key", "al-not-a-real-key")],
            r#"{"model":"gpt-5","messages":[]}"#,
        )
        .await;
        assert_eq!(status, 401);
    }
    gw.stop().await; // writes what was counted

    let report = verify_dir(&data, &[], None).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let store = SqliteStore::open_existing(&data).unwrap();
    let records = query(&store, &AuditFilter::default()).unwrap();
    let one_by_one = records
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Exchange && r.status == Some(401))
        .count() as u64;
    let throttled: Vec<_> = records
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Throttled)
        .collect();
    assert!(
        (airlock_gateway::throttle::BURST as u64..SENT).contains(&one_by_one),
        "{one_by_one} recorded one by one"
    );
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    let t = throttled[0];
    assert_eq!(t.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(t.status, Some(401));
    assert_eq!(t.decision, Some(Decision::Denied));
    assert_eq!(
        one_by_one + t.lost_records.unwrap(),
        SENT,
        "every refusal accounted for"
    );
}

/// A Gemini answer's `usageMetadata` reaches the audit record: the real gemini-cli capture
/// sent through the gateway to an upstream that answers as Gemini does.
#[tokio::test]
async fn gemini_usage_is_recorded() {
    const ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi."}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":812,"candidatesTokenCount":40,"cachedContentTokenCount":512,"thoughtsTokenCount":25,"totalTokenCount":877}}"#;
    let up = answering_upstream(
        &[("content-type", "application/json")],
        bytes::Bytes::from_static(ANSWER.as_bytes()),
        ANSWER.len(),
    )
    .await;
    let mut gw = start_gateway(&base_config(up, "")).await;
    let data = gw.data_dir();
    let c = captured("gemini-cli-0.61.0.jsonl").remove(0);
    let (status, _, body) = replay(&c, gw.addr).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], ANSWER.as_bytes(), "relayed byte for byte");
    gw.stop().await;
    let recs = exchanges(&data);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].tool.as_deref(), Some("gemini-cli"));
    let u = recs[0].usage.as_ref().expect("usage recorded");
    assert_eq!(u.input_tokens, Some(812));
    assert_eq!(u.output_tokens, Some(65));
    assert_eq!(u.cache_read_tokens, Some(512));
    assert_eq!(u.reasoning_tokens, Some(25));
}

/// An upstream on loopback that answers every request with `headers` and `body`, sent in pieces
/// of `piece` bytes.
async fn answering_upstream(
    headers: &[(&'static str, &'static str)],
    body: bytes::Bytes,
    piece: usize,
) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let headers = headers.to_vec();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (headers, body) = (headers.clone(), body.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (headers, body) = (headers.clone(), body.clone());
                    async move {
                        let (tx, rx) = tokio::sync::mpsc::channel(4);
                        tokio::spawn(async move {
                            for c in body.chunks(piece.max(1)) {
                                if tx.send(body.slice_ref(c)).await.is_err() {
                                    return;
                                }
                            }
                        });
                        let mut r = http::Response::builder();
                        for (k, v) in headers {
                            r = r.header(k, v);
                        }
                        Ok::<_, std::convert::Infallible>(r.body(ChannelBody(rx)).unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    up
}

/// Write-ahead: a forwarded request is on record while its answer is still streaming (a
/// gateway killed mid-answer would leave it there), and the exchange record that ends it
/// follows under the same request id.
#[tokio::test]
async fn a_streaming_request_is_on_record_before_its_answer_ends() {
    use std::time::Duration;
    let mock = Mock::start().await;
    let mut gw = start_gateway(&base_config(mock.addr, "")).await;
    let data = gw.data_dir();
    let (tx, resp) = mock
        .stream_through(
            gw.addr,
            "/v1/messages",
            &[("user-agent", "claude-cli/2.1.332 (external, cli)")],
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"say hello"}]}"#,
        )
        .await;
    tx.send(bytes::Bytes::from_static(
        b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
    ))
    .await
    .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-airlock-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.is_data());

    // The upstream stream is still open: the request record must be committed, its end not.
    let store = SqliteStore::open_existing(&data).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let during = loop {
        let recs = query(&store, &AuditFilter::default()).unwrap();
        if !recs.is_empty() || std::time::Instant::now() > deadline {
            break recs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(during.len(), 1, "{during:#?}");
    assert_eq!(during[0].kind, airlock_audit::RecordKind::Request);
    assert_eq!(during[0].request_id, id);
    assert_eq!(during[0].tool.as_deref(), Some("claude-code"));
    assert_eq!(during[0].model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(during[0].upstream.as_deref(), Some("anthropic"));

    tx.send(bytes::Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ))
    .await
    .unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    gw.stop().await;

    let report = verify_dir(&data, &[], None).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let recs = query(&store, &AuditFilter::default()).unwrap();
    let kinds: Vec<_> = recs
        .iter()
        .map(|r| (r.kind, r.request_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (airlock_audit::RecordKind::Request, id.as_str()),
            (airlock_audit::RecordKind::Exchange, id.as_str())
        ]
    );
    assert_eq!(recs[1].status, Some(200));
    assert!(recs[1].response_bytes > 0);
}

/// Fail-closed write-ahead: a request whose record the audit queue cannot take is refused
/// before anything is sent upstream, and the loss is counted in the chain. The queue holds one
/// record and the writer is stalled by another connection holding SQLite's write lock; the
/// forwarded requests' answers stream from the mock and stay open, so nothing else is queued.
#[tokio::test]
async fn a_request_the_audit_queue_cannot_record_is_not_sent_under_fail_closed() {
    use std::time::Duration;
    let mock = Mock::start().await;
    let mut gw = start_gateway(&base_config(mock.addr, "[audit]\nqueue_capacity = 1\n")).await;
    let data = gw.data_dir();
    let lock = rusqlite::Connection::open(data.join(airlock_audit::DB_FILE)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Requests are forwarded while their records fit: one in the stalled writer's hands, one
    // in the queue (how they batch depends on scheduling). The first request whose record
    // finds no room is refused.
    let mut open = Vec::new();
    let mut refused = None;
    for n in 1..=6u32 {
        let mut feed = mock.take_stream();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/v1/chat/completions", gw.addr))
            .header("content-type", "application/json")
            .header("user-agent", "QwenCode/0.24.4 (linux; x64)")
            .header("x-mock", "channel")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                r#"{{"model":"gpt-5","stream":true,"messages":[{{"role":"user","content":"turn {n}"}}]}}"#
            ))))
            .unwrap();
        let c = client();
        let mut resp = tokio::spawn(async move { c.request(req).await.unwrap() });
        tokio::select! {
            tx = &mut feed => open.push((tx.unwrap(), resp)),
            r = &mut resp => {
                refused = Some(r.unwrap());
                break;
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("request {n} neither sent nor refused"),
        }
    }
    let refused = refused.expect("a request is refused once the queue is full");
    assert_eq!(refused.status(), 503);
    let b = refused.into_body().collect().await.unwrap().to_bytes();
    let msg = json(&b)["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("audit log"), "{msg}");
    assert!(!open.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        mock.seen().len(),
        open.len(),
        "the refused request reached the upstream"
    );
    let forwarded = open.len();

    // The lock goes: the forwarded requests' records are committed, their answers complete.
    lock.execute_batch("ROLLBACK").unwrap();
    for (tx, resp) in open {
        tx.send(bytes::Bytes::from_static(
            b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
        ))
        .await
        .unwrap();
        drop(tx);
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .unwrap()
            .unwrap();
    }
    gw.stop().await;
    drop(lock);

    let report = verify_dir(&data, &[], None).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let recs = query(
        &SqliteStore::open_existing(&data).unwrap(),
        &AuditFilter::default(),
    )
    .unwrap();
    // Every request that went upstream has its request record; the refused one is counted.
    let requests = recs
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Request)
        .count();
    assert_eq!(requests, forwarded, "{recs:#?}");
    let lost: u64 = recs
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Overflow)
        .filter_map(|r| r.lost_records)
        .sum();
    assert!(lost >= 1, "the refused record is counted: {recs:#?}");
}
