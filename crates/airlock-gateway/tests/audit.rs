//! The audit trail written by the gateway: one hash-chained record per exchange, verifiable
//! afterwards with `airlock_audit::verify_dir`.

mod common;

use airlock_audit::{AuditFilter, Decision, SqliteStore, query, verify_dir};
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
    let resp = client()
        .request(captured_request(&c, gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    // The end of the answer is released only after the record is committed, so it is
    // readable from another connection with the gateway still running. (The writer is usually
    // fast enough that this also holds without the wait: it does not prove the wait alone.)
    let early = query(
        &SqliteStore::open_existing(&data).unwrap(),
        &AuditFilter::default(),
    )
    .unwrap();
    assert_eq!(early.len(), 1, "record committed before the answer ended");
    assert_eq!(early[0].tool.as_deref(), Some("claude-code"));

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

    gw.stop().await;

    let report = verify_dir(&data, &[], None).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.records >= 3, "{report:?}");

    let store = SqliteStore::open_existing(&data).unwrap();
    let records = query(&store, &AuditFilter::default()).unwrap();
    let exchanges: Vec<_> = records
        .iter()
        .filter(|r| r.kind == airlock_audit::RecordKind::Exchange)
        .collect();
    assert_eq!(exchanges.len(), 3, "{exchanges:#?}");

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
