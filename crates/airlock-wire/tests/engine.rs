//! The wire layer driven by the real detection engine (`airlock_detect::Engine::builtin()`).

mod common;

use airlock_wire::*;
use common::*;

#[test]
fn engine_redacts_and_normalizes_in_real_captures() {
    let engine = engine();
    let policy = Actions {
        pii: Action::Redact,
        ..Actions::default()
    };
    for (name, api) in [
        ("claude-code-2.1.332", Api::AnthropicMessages),
        ("codex-0.169.0", Api::OpenAiResponses),
        ("qwen-code-0.24.4", Api::OpenAiChat),
        ("opencode-1.18.33", Api::OpenAiChat),
    ] {
        for (_, base) in capture(name) {
            // inject into the first message-ish text: replace the first occurrence of a common word
            let dirty_json = serde_json::to_string(&dirty_text()).unwrap();
            let dirty_lit = &dirty_json[1..dirty_json.len() - 1];
            let marker = "\"text\":\"";
            let marker2 = "\"content\":\"";
            let at = base
                .find(marker)
                .map(|p| p + marker.len())
                .or_else(|| base.find(marker2).map(|p| p + marker2.len()))
                .expect("a text literal");
            let body = format!("{}{} {}", &base[..at], dirty_lit, &base[at..]);
            let scope = VaultScope::detached();
            let r = inspect(api, body.as_bytes(), engine, &policy, &scope).expect("inspect");
            let out = String::from_utf8(r.body.expect("changed")).unwrap();
            serde_json::from_str::<serde_json::Value>(&out).expect("JSON");
            for v in secret_values() {
                assert!(
                    !out.contains(&v),
                    "{name}: value {}… still in upstream body",
                    &v[..4]
                );
            }
            assert!(
                !out.contains(ZW) && !out.contains(TAGS),
                "{name}: covert characters left"
            );
            assert!(
                out.contains(LOOKALIKE_CLEAN),
                "{name}: look-alike apostrophe not mapped"
            );
            assert!(out.contains("[REDACTED_"), "{name}");
            // restore what the upstream would echo
            let echoed = serde_json::json!({"type":"message","content":[{"type":"text","text": out.clone()}]}).to_string();
            let back = restore_json(Api::AnthropicMessages, echoed.as_bytes(), &scope)
                .unwrap()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
            let text = v["content"][0]["text"].as_str().unwrap();
            for s in secret_values() {
                assert!(text.contains(&s), "{name}: {}… not restored", &s[..4]);
            }
        }
    }
}

#[test]
fn cached_engine_gives_the_same_result_and_hits_on_resend() {
    let cached = CachedDetector::new(airlock_detect::Engine::builtin().expect("engine"));
    let policy = Actions {
        pii: Action::Redact,
        ..Actions::default()
    };
    let body = dirty_claude_body();
    let direct = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        engine(),
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let first = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let (h0, m0) = cached.stats();
    let second = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let (h1, m1) = cached.stats();
    assert_eq!(direct.body, first.body);
    assert_eq!(first.body, second.body);
    assert_eq!(first.findings.len(), second.findings.len());
    assert!(m0 > 0 && h0 == 0);
    assert_eq!(m1, m0, "second request fully served from the cache");
    // Long literals with findings come from the detection memory, clean ones are not even
    // decoded: the clean-literal memory answers for them.
    let (clean_hits, _) = cached.clean_stats();
    assert!(h1 > 0 && clean_hits > 0, "{h1} {clean_hits}");
    assert_eq!(h1 + clean_hits, m0);
    assert!(second.body.unwrap().windows(10).any(|w| w == b"[REDACTED_"));
}

/// A prompt made of covert characters: every one is normalised, and the text between them is
/// untouched (each detection takes its own fixes from the sorted list of all fixes).
#[test]
fn many_covert_characters_in_one_text_are_all_normalized() {
    let unit = "a\u{200B}b c\u{202E}d\u{202C} it\u{02BC}s ";
    let text = unit.repeat(3_000);
    let body = serde_json::json!({
        "model": "gpt-5",
        "messages": [{"role": "user", "content": text}],
    })
    .to_string();
    let scope = VaultScope::detached();
    let r = inspect(
        Api::OpenAiChat,
        body.as_bytes(),
        engine(),
        &Actions::default(),
        &scope,
    )
    .expect("inspect");
    let out: serde_json::Value = serde_json::from_slice(&r.body.expect("changed")).unwrap();
    let sent = out["messages"][0]["content"].as_str().unwrap();
    assert_eq!(sent, "ab cd it's ".repeat(3_000));
}

/// A Chat body whose user messages are `texts`.
fn chat_body(texts: &[String]) -> String {
    let msgs: Vec<_> = texts
        .iter()
        .map(|t| serde_json::json!({"role": "user", "content": t}))
        .collect();
    serde_json::json!({"model": "gpt-5", "messages": msgs}).to_string()
}

/// A request past the findings limit is blocked whole, in its API's error shape, and no part of
/// it is forwarded. (Before the limit existed, a text with more covert characters than the
/// engine's cap on findings was forwarded with the characters past the cap left in it.)
#[test]
fn a_request_past_the_findings_limit_is_blocked_not_forwarded_in_part() {
    let det = CachedDetector::new(airlock_detect::Engine::builtin().unwrap());
    // One text past the engine's cap; then 498 texts of 201 covert characters each, every one
    // small enough to be remembered, 100,098 together: the limit falls in the last one, after
    // 103 of its characters.
    let one = vec!["a\u{200B}b ".repeat(MAX_REQUEST_FINDINGS + 1)];
    let many: Vec<String> = (0..498)
        .map(|i| format!("part {i}: {}", "c\u{200B}d ".repeat(201)))
        .collect();
    let scope = VaultScope::detached();
    for (name, texts) in [("one text", &one), ("498 texts", &many)] {
        let body = chat_body(texts);
        // Twice: nothing of a limited request is remembered as clean or replayed as complete.
        for round in 0..2 {
            let r = inspect(
                Api::OpenAiChat,
                body.as_bytes(),
                &det,
                &Actions::default(),
                &scope,
            )
            .expect("inspect");
            assert!(r.limited, "{name}, round {round}");
            let b = r.blocked.as_ref().expect("blocked");
            assert_eq!(b.rule_id, LIMIT_RULE_ID, "{name}, round {round}");
            assert!(r.body.is_none(), "{name}: nothing forwarded");
            assert!(r.findings.len() <= MAX_REQUEST_FINDINGS, "{name}");
            let (status, err) = block_error(Api::OpenAiChat, b);
            let err: serde_json::Value = serde_json::from_slice(&err).unwrap();
            let msg = err["error"]["message"].as_str().unwrap();
            assert_eq!(status, 403);
            assert!(msg.contains("more findings"), "{msg}");
            assert!(msg.contains(LIMIT_RULE_ID), "{msg}");
        }
        // A policy that changes nothing, or a dry run, forwards the body as it came: so would
        // inspecting all of it. The limit is still reported.
        let log = Actions {
            secret: Action::Log,
            pii: Action::Log,
            covert: CovertAction::Log,
            custom: Action::Log,
            ..Actions::default()
        };
        let dry = Actions {
            dry_run: true,
            ..Actions::default()
        };
        for actions in [log, dry] {
            let other = VaultScope::detached();
            let r = inspect(Api::OpenAiChat, body.as_bytes(), &det, &actions, &other).unwrap();
            assert!(
                r.limited && r.blocked.is_none() && r.body.is_none(),
                "{name}"
            );
        }
    }
    // The text the limit fell in, at the same place in a small request: it is normalised
    // whole. (Had its first 103 findings been remembered, they would be replayed here and the
    // other 98 characters sent on.)
    let mut small: Vec<String> = (0..497).map(|i| format!("hello {i}")).collect();
    small.push(many[497].clone());
    let r = inspect(
        Api::OpenAiChat,
        chat_body(&small).as_bytes(),
        &det,
        &Actions::default(),
        &scope,
    )
    .unwrap();
    assert!(!r.limited && r.blocked.is_none());
    assert_eq!(r.findings.len(), 201);
    let out = String::from_utf8(r.body.expect("normalised")).unwrap();
    assert!(!out.contains('\u{200B}'));
    // A company's own limit (`[redaction] max_findings`) applies the same way, at its value.
    let text = vec!["x\u{200B}y ".repeat(1_000)];
    for (max, limited) in [(1_000, false), (999, true)] {
        let actions = Actions {
            max_findings: max,
            ..Actions::default()
        };
        let r = inspect(
            Api::OpenAiChat,
            chat_body(&text).as_bytes(),
            &det,
            &actions,
            &VaultScope::detached(),
        )
        .unwrap();
        assert_eq!(r.limited, limited, "max_findings {max}");
        assert_eq!(r.blocked.is_some(), limited, "max_findings {max}");
    }
    // Under the limit, every character is normalised.
    let under: Vec<String> = many[..400].to_vec();
    let scope = VaultScope::detached();
    let r = inspect(
        Api::OpenAiChat,
        chat_body(&under).as_bytes(),
        &det,
        &Actions::default(),
        &scope,
    )
    .unwrap();
    assert!(!r.limited && r.blocked.is_none());
    assert_eq!(r.findings.len(), 400 * 201);
    let out = String::from_utf8(r.body.expect("normalised")).unwrap();
    assert!(!out.contains('\u{200B}'));
}

/// `body` inspected under the default policy in a fresh scope: the inspection and the body
/// that would leave (which must have changed), after checking that `secret` is not in it.
fn redacted(api: Api, body: &serde_json::Value, secret: &str) -> (Inspection, String) {
    let mut r = inspect(
        api,
        body.to_string().as_bytes(),
        engine(),
        &Actions::default(),
        &VaultScope::detached(),
    )
    .expect("inspect");
    let out = String::from_utf8(r.body.take().expect("redacted")).unwrap();
    assert!(!out.contains(secret), "{api:?}: the secret left: {out}");
    (r, out)
}

/// Inside JSON a tool defined (tool inputs, function arguments, tool results) no key is
/// opaque: a secret under an MCP tool's `data`, `id`, `type` or `status` argument is redacted
/// like any other. (These keys were skipped everywhere, and the gateway restores placeholders
/// under every key of a response: a value restored there came back in clear in the next
/// turn's history.)
#[test]
fn secrets_under_any_key_of_tool_json_are_redacted() {
    let tok = github_token();
    let args = serde_json::json!({"data": tok, "id": tok, "type": tok, "status": tok});
    let bodies = [
        (
            Api::AnthropicMessages,
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "mcp__s3__put", "input": args}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": {"data": tok}}]},
            ]}),
        ),
        (
            Api::OpenAiChat,
            serde_json::json!({"model": "m", "messages": [
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "put", "arguments": args.to_string()}}]},
            ]}),
        ),
        (
            Api::OpenAiResponses,
            serde_json::json!({"model": "m", "input": [
                {"type": "function_call", "call_id": "c1", "name": "put", "arguments": args.to_string()},
            ]}),
        ),
        (
            Api::GeminiGenerateContent,
            serde_json::json!({"contents": [
                {"role": "model", "parts": [{"functionCall": {"name": "put", "args": args}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "put", "response": {"id": tok}}}]},
            ]}),
        ),
    ];
    for (api, body) in bodies {
        let (r, out) = redacted(api, &body, &tok);
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
        let n = if matches!(api, Api::AnthropicMessages | Api::GeminiGenerateContent) {
            5
        } else {
            4
        };
        assert_eq!(
            r.findings.iter().filter(|f| f.applied).count(),
            n,
            "{api:?}"
        );
    }
}

/// The other Gemini model methods the gateway routes to the same upstream carry text too:
/// `countTokens` (its `generateContentRequest`), `embedContent` and batch embedding.
#[test]
fn gemini_token_counts_and_embeddings_are_inspected() {
    let tok = github_token();
    let content = serde_json::json!({"parts": [{"text": format!("key {tok}")}]});
    for body in [
        serde_json::json!({"generateContentRequest": {"model": "models/g", "contents": [content], "systemInstruction": content}}),
        serde_json::json!({"content": content}),
        serde_json::json!({"requests": [{"model": "models/e", "content": content}, {"model": "models/e", "content": content}]}),
    ] {
        let (r, _) = redacted(Api::GeminiGenerateContent, &body, &tok);
        assert_eq!(
            r.findings.len(),
            2 - usize::from(body.get("content").is_some()),
            "{body}"
        );
    }
}

/// Text that reaches the model outside the conversation: Chat's predicted output and a
/// Responses stored prompt's variables.
#[test]
fn predicted_output_and_prompt_variables_are_inspected() {
    let tok = github_token();
    for (api, body) in [
        (
            Api::OpenAiChat,
            serde_json::json!({"model": "m", "messages": [], "prediction": {"type": "content", "content": format!("GH={tok}")}}),
        ),
        (
            Api::OpenAiChat,
            serde_json::json!({"model": "m", "messages": [], "prediction": {"type": "content", "content": [{"type": "text", "text": format!("GH={tok}")}]}}),
        ),
        (
            Api::OpenAiResponses,
            serde_json::json!({"model": "m", "prompt": {"id": "pmpt_1", "variables": {"env": format!("GH={tok}"), "file": {"type": "input_text", "text": tok}}}}),
        ),
    ] {
        redacted(api, &body, &tok);
    }
}

/// An Anthropic document whose source is plain text or content blocks is text the model reads:
/// scanned and redacted. A base64 document is counted, not scanned.
#[test]
fn text_documents_are_inspected_base64_ones_counted() {
    let tok = github_token();
    let body = serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": format!("GH={tok}")}, "title": ".env"},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": format!("GH={tok}")}]}, "context": format!("from {tok}")},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}},
    ]}]});
    let (r, out) = redacted(Api::AnthropicMessages, &body, &tok);
    assert!(out.contains("JVBERi0xLjQK"));
    assert_eq!(r.findings.iter().filter(|f| f.applied).count(), 3);
    assert_eq!(r.media_parts, 1);
}

/// A text file sent inline as base64 is text the model reads: decoded, scanned, and re-encoded
/// with the secret replaced, in every API's way of attaching a file. A PDF is counted, not
/// scanned, and passes as it came.
#[test]
fn base64_text_files_are_inspected_binary_ones_counted() {
    use base64::Engine as _;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let tok = github_token();
    let env = b64(&format!("GITHUB_TOKEN={tok}\n"));
    let pdf = "JVBERi0xLjQK";
    let url = |ty: &str, d: &str| format!("data:{ty};base64,{d}");
    for (api, body) in [
        (
            Api::AnthropicMessages,
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": env}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
            ]}]}),
        ),
        (
            Api::OpenAiChat,
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"filename": ".env", "file_data": url("text/plain", &env)}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": url("application/pdf", pdf)}},
            ]}]}),
        ),
        (
            Api::OpenAiResponses,
            serde_json::json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_file", "filename": ".env", "file_data": url("text/plain", &env)},
                {"type": "input_file", "filename": "a.pdf", "file_data": url("application/pdf", pdf)},
            ]}]}),
        ),
        (
            Api::GeminiGenerateContent,
            serde_json::json!({"contents": [{"role": "user", "parts": [
                {"inlineData": {"mimeType": "text/plain", "data": env}},
                {"inlineData": {"mimeType": "application/pdf", "data": pdf}},
            ]}]}),
        ),
    ] {
        let (r, out) = redacted(api, &body, &tok);
        assert!(!out.contains(&env), "{api:?}: the file went out as it came");
        assert!(out.contains(pdf), "{api:?}");
        assert_eq!(r.media_parts, 1, "{api:?}");
        assert_eq!(
            r.findings.iter().filter(|f| f.applied).count(),
            1,
            "{api:?}"
        );
        // What the model gets: the file with a placeholder in place of the token.
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let sent = [
            &v["messages"][0]["content"][0]["source"]["data"],
            &v["messages"][0]["content"][0]["file"]["file_data"],
            &v["input"][0]["content"][0]["file_data"],
            &v["contents"][0]["parts"][0]["inlineData"]["data"],
        ]
        .into_iter()
        .find_map(|x| x.as_str())
        .unwrap();
        let payload = sent.rsplit(',').next().unwrap();
        let file = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        let file = String::from_utf8(file).unwrap();
        assert!(
            file.starts_with("GITHUB_TOKEN=[REDACTED_GITHUB_TOKEN_"),
            "{api:?}: {file}"
        );
    }
}
