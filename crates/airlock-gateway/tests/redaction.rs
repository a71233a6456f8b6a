//! Redaction through the gateway: real HTTP on loopback, the real agent captures with injected
//! secrets and covert characters, the mock upstream echoing the placeholders it receives.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;

#[tokio::test]
async fn claude_capture_secrets_are_redacted_upstream_and_restored_in_the_stream() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let c = with_mock(&claude_with_secrets(), "echo-GITHUB");
    assert!(c.body.contains("\"stream\":true"), "the capture streams");
    let resp = client()
        .request(captured_request(&c, gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.into_body().collect().await.unwrap().to_bytes();

    let up = mock.last();
    let sent = String::from_utf8(up.body.to_vec()).unwrap();
    assert!(!sent.contains(AWS_KEY_ID), "AWS key id left the gateway");
    assert!(
        !sent.contains(&github_token()),
        "GitHub token left the gateway"
    );
    assert!(!sent.contains(ZW), "zero-width character left the gateway");
    assert!(sent.contains("to production"), "covert character removed");
    let ph = find_placeholder(&up.body, "GITHUB").expect("GitHub placeholder upstream");
    assert!(
        find_placeholder(&up.body, "AWS").is_some(),
        "AWS placeholder"
    );
    assert!(
        !up.headers.contains_key("accept-encoding"),
        "rewritten request asks for an uncompressed answer"
    );

    let text = sse_text(&body);
    assert_eq!(text, format!("export TOKEN={} done", github_token()));
    assert!(!String::from_utf8_lossy(&body).contains(&ph));
    assert!(String::from_utf8_lossy(&body).contains("message_stop"));
}

/// Gemini CLI's real streaming request with a secret and a covert character injected: the
/// upstream gets the placeholder and clean text; the agent gets the original back, in the text
/// split across events and in the function call's arguments.
#[tokio::test]
async fn gemini_capture_secrets_are_redacted_upstream_and_restored_in_the_stream() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let mut c = captured("gemini-cli-0.61.0.jsonl")
        .into_iter()
        .find(|c| c.target.contains(":streamGenerateContent"))
        .expect("a gemini-cli stream request");
    let mut v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    let text = format!("use GITHUB_TOKEN={} for pro{ZW}duction", github_token());
    v["contents"]
        .as_array_mut()
        .expect("contents")
        .push(serde_json::json!({"role": "user", "parts": [{"text": text}]}));
    c.body = serde_json::to_string(&v).unwrap();
    let c = with_mock(&c, "echo-GITHUB");
    let (status, _, body) = replay(&c, gw.addr).await;
    assert_eq!(status, 200);

    let up = mock.last();
    let sent = String::from_utf8(up.body.to_vec()).unwrap();
    assert!(
        !sent.contains(&github_token()),
        "GitHub token left the gateway"
    );
    assert!(!sent.contains(ZW), "zero-width character left the gateway");
    assert!(sent.contains("for production"));
    let ph = find_placeholder(&up.body, "GITHUB").expect("placeholder upstream");

    let answer = String::from_utf8(body.to_vec()).unwrap();
    assert!(!answer.contains(&ph), "placeholder reached the agent");
    let mut text = String::new();
    let mut command = String::new();
    for data in answer.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let e: serde_json::Value = serde_json::from_str(data).expect("event is JSON");
        for p in e["candidates"][0]["content"]["parts"].as_array().unwrap() {
            text.push_str(p["text"].as_str().unwrap_or(""));
            if let Some(cmd) = p["functionCall"]["args"]["command"].as_str() {
                command.push_str(cmd);
            }
        }
    }
    assert_eq!(text, format!("export TOKEN={} done", github_token()));
    assert_eq!(command, format!("echo {}", github_token()));
}

#[tokio::test]
async fn same_request_twice_gives_byte_identical_upstream_bodies() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let c = claude_with_secrets();
    for _ in 0..2 {
        let (status, _, _) = replay(&c, gw.addr).await;
        assert_eq!(status, 200);
    }
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].body,
        Bytes::from(c.body.clone()),
        "it was rewritten"
    );
    assert_eq!(seen[0].body, seen[1].body, "byte-identical upstream bodies");
}

#[tokio::test]
async fn openai_chat_json_answer_gets_the_original_back() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let token = github_token();
    let req = serde_json::json!({
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": format!("push with token {token} please")}
        ]
    })
    .to_string();
    let (status, headers, body) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[
            JSON,
            ("x-mock", "echo-GITHUB"),
            ("accept-encoding", "gzip"),
            ("session_id", "sess-openai-1"),
        ],
        req,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let up = mock.last();
    assert!(!String::from_utf8_lossy(&up.body).contains(&token));
    assert!(!up.headers.contains_key("accept-encoding"));
    let ph = find_placeholder(&up.body, "GITHUB").expect("placeholder upstream");
    let v = json(&body);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("export TOKEN={token}")
    );
    assert!(!String::from_utf8_lossy(&body).contains(&ph));
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len.to_str().unwrap(), body.len().to_string());
    }
}

#[tokio::test]
async fn clean_request_keeps_accept_encoding_and_bytes() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let req = r#"{"model":"gpt-5","messages":[{"role":"user","content":"list the files"}]}"#;
    let (status, _, _) = send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("accept-encoding", "gzip")],
        req,
    )
    .await;
    assert_eq!(status, 200);
    let up = mock.last();
    assert_eq!(up.body, Bytes::from(req));
    assert_eq!(up.headers["accept-encoding"], "gzip");
}

#[tokio::test]
async fn block_action_answers_403_in_the_api_shape_without_the_value() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "[redaction]\nsecret = \"block\"\n")).await;
    let token = github_token();
    let req = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{{"role":"user","content":"token {token}"}}]}}"#
    );
    let (status, headers, body) = send(gw.addr, "POST", "/v1/messages", &[JSON], req).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-airlock-error-source"], "client");
    let v = json(&body);
    assert_eq!(v["type"], "error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("messages[0]"), "{msg}");
    assert!(!msg.contains(&token));
    assert!(mock.seen().is_empty(), "nothing reached the upstream");
}

/// A body with more findings than Airlock inspects (here 100,001 zero-width characters, more
/// than the engine reports in one scan) is refused whole in the API's error shape, nothing of
/// it reaches the upstream, and the gateway goes on serving. Multi-threaded runtime, as
/// `airlock serve` runs: such a body is inspected off the async worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_findings_limit_is_refused_whole() {
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let flood = "a\u{200B}b ".repeat(airlock_wire::MAX_REQUEST_FINDINGS + 1);
    let (status, headers, answer) = send_chat(&gw, &flood).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(headers["x-airlock-error-source"], "client");
    let v = json(&answer);
    assert_eq!(v["error"]["code"], "airlock_blocked");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(airlock_wire::LIMIT_RULE_ID), "{msg}");
    assert!(msg.contains("messages[0]"), "{msg}");
    assert!(mock.seen().is_empty(), "nothing reached the upstream");
    let sent = sent_upstream(&gw, &mock, "a normal question").await;
    assert!(sent.contains("a normal question"));
}

#[tokio::test]
async fn invalid_redaction_table_is_a_config_error() {
    let mock = Mock::start().await;
    let err = start_error(&base_config(mock.addr, "[redaction]\nsecret = \"shred\"\n"));
    assert!(err.to_string().contains("[redaction]"), "{err}");
}

/// `[redaction.tool.*]` and `[redaction.team.*]` change the actions for that tool or team only;
/// the team's choice wins over the tool's.
#[tokio::test]
async fn per_tool_and_per_team_overrides() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("anthropic.key");
    std::fs::write(&cred, "sk-ant-upstream-secret\n").unwrap();
    let cfg = base_config(
        mock.addr,
        "[redaction]\npii = \"log\"\n\n[redaction.tool.qwen-code]\npii = \"redact\"\n\n[redaction.team.payments]\nsecret = \"block\"\n",
    )
    .replacen(
        "credential = { passthrough = true }",
        &format!("credential = {{ file = {:?} }}", cred.display().to_string()),
        1,
    );
    let (mut payments, mut platform) = (String::new(), String::new());
    let gw = start_gateway_with(&cfg, |data| {
        let store = airlock_gateway::KeyStore::open(data).unwrap();
        payments = store
            .create("alice", Some("payments"))
            .unwrap()
            .key
            .expose()
            .to_string();
        platform = store
            .create("bob", Some("platform"))
            .unwrap()
            .key
            .expose()
            .to_string();
    })
    .await;
    let email = "jane.doe@payments-corp.com";
    let token = github_token();
    let body = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{{"role":"user","content":"mail {email} token {token}"}}]}}"#
    );
    let post = |key: &str, ua: &'static str| {
        let body = body.clone();
        let key = key.to_string();
        async move {
            send(
                gw.addr,
                "POST",
                "/v1/messages",
                &[JSON, ("x-api-key", key.as_str()), ("user-agent", ua)],
                body,
            )
            .await
        }
    };
    const CLAUDE: &str = "claude-cli/2.1.300 (external, cli)";
    const QWEN: &str = "QwenCode/0.24.4 (linux; x64)";

    // Team platform, Claude Code: the base policy — secret redacted, e-mail only logged.
    let (s, _, b) = post(&platform, CLAUDE).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let sent = String::from_utf8(mock.last().body.to_vec()).unwrap();
    assert!(!sent.contains(&token) && sent.contains(email), "{sent}");

    // Team platform, Qwen Code: the tool override also redacts the e-mail.
    let (s, _, b) = post(&platform, QWEN).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let sent = String::from_utf8(mock.last().body.to_vec()).unwrap();
    assert!(!sent.contains(&token) && !sent.contains(email), "{sent}");
    assert!(
        find_placeholder(sent.as_bytes(), "EMAIL").is_some(),
        "{sent}"
    );

    // Team payments: secrets are blocked whatever the tool; nothing reaches the upstream.
    let before = mock.seen().len();
    for ua in [CLAUDE, QWEN] {
        let (s, _, b) = post(&payments, ua).await;
        assert_eq!(s, 403, "{}", String::from_utf8_lossy(&b));
        assert!(!String::from_utf8_lossy(&b).contains(&token));
    }
    assert_eq!(mock.seen().len(), before);
}

#[tokio::test]
async fn redaction_override_for_an_unknown_tool_is_a_config_error() {
    let mock = Mock::start().await;
    let err = start_error(&base_config(
        mock.addr,
        "[redaction.tool.qwen-cod]\npii = \"redact\"\n",
    ))
    .to_string();
    assert!(
        err.contains("tool.qwen-cod") && err.contains("qwen-code"),
        "{err}"
    );
}

/// The gateway scans with the configuration's `[detection]` (custom markers here), not only the
/// built-in rules; a reload that changes it rebuilds the engine, and a broken one is refused
/// while the old rules stay in force.
#[tokio::test]
async fn detection_table_is_applied_and_reloaded() {
    async fn ask(gw: &Gw, mock: &Mock) -> String {
        sent_upstream(
            gw,
            mock,
            "Ship project Bluebird and project Redwing on Monday",
        )
        .await
    }
    let mock = Mock::start().await;
    let addr = mock.addr;
    let with = |name: &str| {
        base_config(
            addr,
            &format!("\n[detection.custom]\ncode_names = [{name:?}]\n"),
        )
    };
    let gw = start_gateway(&with("Bluebird")).await;
    let sent = ask(&gw, &mock).await;
    assert!(!sent.contains("Bluebird"), "{sent}");
    assert!(
        sent.contains("Redwing") && sent.contains("[REDACTED_"),
        "{sent}"
    );

    std::fs::write(&gw.config_path, with("Redwing")).unwrap();
    gw.gateway.reload().expect("valid new configuration");
    let sent = ask(&gw, &mock).await;
    assert!(
        sent.contains("Bluebird") && !sent.contains("Redwing"),
        "{sent}"
    );

    // An invalid [detection] is refused, naming it; the rules in force stay.
    std::fs::write(
        &gw.config_path,
        base_config(mock.addr, "\n[detection]\ndisable = [\"no-such-rule\"]\n"),
    )
    .unwrap();
    let e = gw.gateway.reload().unwrap_err().to_string();
    assert!(
        e.contains("[detection]") && e.contains("no-such-rule"),
        "{e}"
    );
    let sent = ask(&gw, &mock).await;
    assert!(!sent.contains("Redwing"), "{sent}");
}

/// A rule file named by `[detection] rule_files` is watched: editing it (and only it) puts the
/// new rules in force without a restart or SIGHUP; an edit that does not compile is refused and
/// the rules in force stay.
#[tokio::test]
async fn rule_file_edits_are_picked_up() {
    async fn ask(gw: &Gw, mock: &Mock) -> String {
        sent_upstream(gw, mock, "deploy with ACME-7Q2W9E4R and ZETA-5T8Y1U3I").await
    }
    let rule = |prefix: &str| {
        format!(
            r#"[[rule]]
id = "company-deploy-token"
category = "secret"
description = "Deploy tokens of our build system."
pattern = '''\b(?P<value>{prefix}-[A-Z0-9]{{8}})\b'''
keywords = ["{prefix}-"]
severity = "high"
confidence = "high"
label = "DEPLOY_TOKEN"
examples = ["token «{prefix}-7Q2W9E4R»"]
negative_examples = ["{prefix}-short"]
"#
        )
    };
    let mock = Mock::start().await;
    let first = rule("ACME");
    let gw = start_gateway_with(
        &base_config(
            mock.addr,
            "\n[detection]\nrule_files = [\"deploy-rules.toml\"]\n",
        ),
        |data| std::fs::write(data.parent().unwrap().join("deploy-rules.toml"), &first).unwrap(),
    )
    .await;
    let rules_path = gw.config_path.parent().unwrap().join("deploy-rules.toml");
    let sent = ask(&gw, &mock).await;
    assert!(
        !sent.contains("ACME-7Q2W9E4R") && sent.contains("ZETA-5T8Y1U3I"),
        "{sent}"
    );

    // Only the rule file changes (a different size, so the change is seen whatever the clock's
    // resolution); the gateway's file watch rebuilds the engine within a poll or two.
    std::fs::write(&rules_path, rule("ZETA") + "\n# edited\n").unwrap();
    let mut sent = String::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sent = ask(&gw, &mock).await;
        if !sent.contains("ZETA-5T8Y1U3I") {
            break;
        }
    }
    assert!(
        sent.contains("ACME-7Q2W9E4R") && !sent.contains("ZETA-5T8Y1U3I"),
        "{sent}"
    );

    // A rule file that does not compile is refused by name; the rules in force stay.
    std::fs::write(&rules_path, "[[rule]]\nid = \"broken\"\n").unwrap();
    let e = gw.gateway.reload().unwrap_err().to_string();
    assert!(e.contains("deploy-rules.toml"), "{e}");
    let sent = ask(&gw, &mock).await;
    assert!(!sent.contains("ZETA-5T8Y1U3I"), "{sent}");
}

/// Sends one Chat request with `content` as Qwen Code; the gateway's answer.
async fn send_chat(gw: &Gw, content: &str) -> (u16, http::HeaderMap, Bytes) {
    let body =
        serde_json::json!({"model": "gpt-5", "messages": [{"role": "user", "content": content}]});
    send(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("user-agent", "QwenCode/0.24.4 (linux; x64)")],
        body.to_string(),
    )
    .await
}

/// Sends one Chat request with `content` as Qwen Code and returns the body the upstream got.
async fn sent_upstream(gw: &Gw, mock: &Mock, content: &str) -> String {
    let (s, _, b) = send_chat(gw, content).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    String::from_utf8(mock.last().body.to_vec()).unwrap()
}
