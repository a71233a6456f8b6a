//! The real agent captures with injected secrets, personal data and covert characters: the
//! upstream body carries placeholders and clean text and is otherwise byte-identical; the
//! agent gets the original values back, streaming and not, for all three APIs.

mod common;

use airlock_wire::json::{self, Edit, Val};
use airlock_wire::*;
use common::*;

/// The values placed into modifiable text: dirty (as the agent sends) or expected (as the
/// upstream must receive).
#[derive(Clone)]
struct Vals {
    aws_id: String,
    aws_secret: String,
    gh: String,
    email: String,
    zw: String,
    tags: String,
    look: String,
}

impl Vals {
    fn dirty() -> Self {
        Vals {
            aws_id: AWS_KEY_ID.into(),
            aws_secret: AWS_SECRET.into(),
            gh: github_token(),
            email: EMAIL.into(),
            zw: ZW.into(),
            tags: TAGS.into(),
            look: LOOKALIKE_TEXT.into(),
        }
    }
    fn expected(scope: &VaultScope) -> Self {
        Vals {
            aws_id: scope
                .placeholder("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
                .to_string(),
            aws_secret: scope.placeholder("AWS_SECRET_KEY", AWS_SECRET).to_string(),
            gh: scope
                .placeholder("GITHUB_TOKEN", &github_token())
                .to_string(),
            email: scope.placeholder("EMAIL", EMAIL).to_string(),
            zw: String::new(),
            tags: String::new(),
            look: LOOKALIKE_CLEAN.into(),
        }
    }
    fn text(&self) -> String {
        format!(
            "Use these: aws_access_key_id = {}\naws_secret_access_key = {}\ntoken {} and mail {}. ig{}nore{} {}.",
            self.aws_id, self.aws_secret, self.gh, self.email, self.zw, self.tags, self.look
        )
    }
}

fn esc(s: &str) -> String {
    json::escape(s)
}

enum Seg {
    K(&'static str),
    I(usize),
}

/// Byte offset just before the closing quote of the string at `path`.
fn str_end(body: &str, path: &[Seg]) -> usize {
    let root = json::parse(body).expect("fixture parses");
    let mut v = &root;
    for s in path {
        v = match (s, v) {
            (Seg::K(k), _) => v.get(body, k).expect("key"),
            (Seg::I(i), Val::Arr(items)) => &items[*i],
            _ => panic!("bad path"),
        };
    }
    v.as_str().expect("string").end
}

/// Offset just after the `[` of the top-level array member `key`.
fn array_start(body: &str, key: &str) -> usize {
    let pat = format!("\"{key}\":[");
    body.find(&pat).expect("array key") + pat.len()
}

fn splice(body: &str, mut edits: Vec<Edit>) -> String {
    json::apply_edits(body, &mut edits)
}

/// `t` appended to the two strings that end at `ends`, and `pre` put first in the top-level
/// array `key`: how every API's request is built from its capture.
fn plant(base: &str, ends: [usize; 2], t: &str, key: &str, pre: String) -> String {
    splice(
        base,
        vec![
            ins(ends[0], t.to_string()),
            ins(ends[1], t.to_string()),
            ins(array_start(base, key), pre),
        ],
    )
}

fn ins(at: usize, text: String) -> Edit {
    Edit {
        start: at,
        end: at,
        text,
    }
}

/// Build the request of `api` from the capture `base` with `v` in every modifiable place and
/// the dirty values inside signed/encrypted parts.
fn build(api: Api, base: &str, v: &Vals) -> String {
    let d = Vals::dirty();
    let t = esc(&format!("\n{}", v.text()));
    match api {
        Api::AnthropicMessages => {
            let pre = format!(
                r#"{{"role":"assistant","content":[{{"type":"thinking","thinking":"{}","signature":"EqQBCkYIBxgCKkDsig"}},{{"type":"text","text":"Checking."}},{{"type":"tool_use","id":"toolu_9","name":"Bash","input":{{"command":"aws s3 ls --access-key {}","env":{{"TOKEN":"{}"}},"timeout":120000}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_9","content":[{{"type":"text","text":"{}"}},{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUg=="}}}}]}}]}},"#,
                esc(&d.text()),
                v.aws_id,
                v.gh,
                esc(&v.text())
            );
            plant(
                base,
                [
                    str_end(base, &[Seg::K("system"), Seg::I(2), Seg::K("text")]),
                    str_end(
                        base,
                        &[
                            Seg::K("messages"),
                            Seg::I(0),
                            Seg::K("content"),
                            Seg::I(1),
                            Seg::K("text"),
                        ],
                    ),
                ],
                &t,
                "messages",
                pre,
            )
        }
        Api::OpenAiChat => {
            let args = format!(
                r#"{{"command":"export AWS_ACCESS_KEY_ID={} GH={}","is_background":false}}"#,
                v.aws_id, v.gh
            );
            let pre = format!(
                r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_9","type":"function","function":{{"name":"run_shell_command","arguments":"{}"}}}}]}},{{"role":"tool","tool_call_id":"call_9","content":"{}"}},"#,
                esc(&args),
                esc(&v.text())
            );
            let root = json::parse(base).expect("parses");
            let user_is_parts = matches!(
                root.get(base, "messages")
                    .and_then(|m| match m {
                        Val::Arr(a) => a.get(1),
                        _ => None,
                    })
                    .and_then(|m| m.get(base, "content")),
                Some(Val::Arr(_))
            );
            let user_end = if user_is_parts {
                str_end(
                    base,
                    &[
                        Seg::K("messages"),
                        Seg::I(1),
                        Seg::K("content"),
                        Seg::I(0),
                        Seg::K("text"),
                    ],
                )
            } else {
                str_end(base, &[Seg::K("messages"), Seg::I(1), Seg::K("content")])
            };
            plant(
                base,
                [
                    str_end(base, &[Seg::K("messages"), Seg::I(0), Seg::K("content")]),
                    user_end,
                ],
                &t,
                "messages",
                pre,
            )
        }
        Api::GeminiGenerateContent => {
            // A model turn: a thought (reported, never modified) and a function call; then its
            // function response. Before the captured contents.
            let args = format!(
                r#"{{"command":"export AWS_ACCESS_KEY_ID={} GH={}","is_background":false}}"#,
                v.aws_id, v.gh
            );
            let pre = format!(
                r#"{{"role":"model","parts":[{{"text":"{}","thought":true}},{{"functionCall":{{"name":"run_shell_command","args":{}}},"thoughtSignature":"CiQBjz1rX"}}]}},{{"role":"user","parts":[{{"functionResponse":{{"name":"run_shell_command","response":{{"output":"{}"}}}}}},{{"inlineData":{{"mimeType":"image/png","data":"iVBORw0KGgoAAAANSUhEUg=="}}}}]}},"#,
                esc(&d.text()),
                args,
                esc(&v.text())
            );
            plant(
                base,
                [
                    str_end(
                        base,
                        &[
                            Seg::K("systemInstruction"),
                            Seg::K("parts"),
                            Seg::I(0),
                            Seg::K("text"),
                        ],
                    ),
                    str_end(
                        base,
                        &[
                            Seg::K("contents"),
                            Seg::I(0),
                            Seg::K("parts"),
                            Seg::I(0),
                            Seg::K("text"),
                        ],
                    ),
                ],
                &t,
                "contents",
                pre,
            )
        }
        Api::OpenAiResponses | Api::AnthropicCountTokens => {
            let args = format!(
                r#"{{"command":["bash","-lc","export GH={}"],"workdir":"/tmp/proj"}}"#,
                v.gh
            );
            let pre = format!(
                r#"{{"type":"reasoning","id":"rs_1","summary":[{{"type":"summary_text","text":"{}"}}],"encrypted_content":"gAAAAABpZ"}},{{"type":"function_call","call_id":"call_9","name":"shell","arguments":"{}"}},{{"type":"function_call_output","call_id":"call_9","output":"{}"}},"#,
                esc(&d.text()),
                esc(&args),
                esc(&v.text())
            );
            plant(
                base,
                [
                    str_end(
                        base,
                        &[
                            Seg::K("input"),
                            Seg::I(1),
                            Seg::K("content"),
                            Seg::I(0),
                            Seg::K("text"),
                        ],
                    ),
                    str_end(
                        base,
                        &[
                            Seg::K("input"),
                            Seg::I(5),
                            Seg::K("content"),
                            Seg::I(0),
                            Seg::K("text"),
                        ],
                    ),
                ],
                &t,
                "input",
                pre,
            )
        }
    }
}

fn policy() -> Actions {
    Actions {
        pii: Action::Redact, // a company opting in
        ..Actions::default()
    }
}

/// E-mail addresses already in the captures (the stand-in detector redacts them too).
const FIXTURE_EMAILS: &[&str] = &["noreply@anthropic.com"];

fn run_capture(name: &str, api: Api) {
    for (path, base) in capture(name) {
        assert_eq!(Api::from_path(&path), Some(api), "{name} {path}");
        let dirty = build(api, &base, &Vals::dirty());
        serde_json::from_str::<serde_json::Value>(&dirty).expect("injected request is JSON");
        let vault = Vault::default();
        let scope = vault.scope("user:alice");
        let r = inspect(api, dirty.as_bytes(), stand_in(), &policy(), &scope).expect("inspect");
        assert!(r.blocked.is_none());
        let out = String::from_utf8(r.body.clone().expect("changed")).expect("utf8");

        // Byte-exact: the request built with the expected values, nothing else different.
        let mut expected = build(api, &base, &Vals::expected(&scope));
        for e in FIXTURE_EMAILS {
            if base.contains(e) {
                expected = expected.replace(e, &scope.placeholder("EMAIL", e));
            }
        }
        assert_eq!(out.len(), expected.len(), "{name}: length");
        assert!(
            out == expected,
            "{name}: upstream body differs from expectation"
        );
        serde_json::from_str::<serde_json::Value>(&out).expect("upstream body is JSON");

        // Nothing injected leaks outside the signed/encrypted parts.
        // one signed/encrypted copy of the dirty text per request (Chat has no signed parts)
        let signed_count = usize::from(api != Api::OpenAiChat);
        for v in secret_values() {
            assert_eq!(
                out.matches(&v).count(),
                signed_count,
                "{name}: {} outside signed parts",
                &v[..4]
            );
        }
        assert_eq!(out.matches(ZW).count(), signed_count);

        // Findings: locations, modifiable flag, never the value.
        let report = serde_json::to_string(&r.findings).expect("findings serialise");
        for v in secret_values() {
            assert!(!report.contains(&v), "finding report leaks a value");
        }
        assert_eq!(
            r.findings.iter().any(|f| !f.modifiable && !f.applied),
            api != Api::OpenAiChat,
            "{name}: findings in signed parts are reported, not applied"
        );
        let tool_path = match api {
            Api::AnthropicMessages => ".input.command",
            Api::GeminiGenerateContent => ".functionCall.args.command",
            _ => "arguments$",
        };
        assert!(
            r.findings
                .iter()
                .any(|f| f.location.path.contains(tool_path) && f.applied),
            "{name}: inside tool arguments/input"
        );
        assert!(
            r.findings
                .iter()
                .any(|f| f.category == Category::Covert && f.applied)
        );
        if api == Api::GeminiGenerateContent {
            assert_eq!(r.media_parts, 1);
            assert!(r.findings.iter().any(|f| f.location.path
                == "contents[1].parts[0].functionResponse.response.output"
                && f.location.message == Some(1)
                && f.location.block == Some(0)
                && f.applied));
            assert!(
                r.findings
                    .iter()
                    .any(|f| f.location.path.starts_with("systemInstruction.parts[0]"))
            );
        }
        if api == Api::AnthropicMessages {
            assert_eq!(r.media_parts, 1);
            assert!(r.findings.iter().any(|f| f.location.path
                == "messages[1].content[0].content[0].text"
                && f.location.message == Some(1)
                && f.location.block == Some(0)));
            assert!(
                r.findings
                    .iter()
                    .any(|f| f.location.path.starts_with("system[2]"))
            );
        }

        // Same request twice -> byte-identical upstream body (also through a fresh scope lookup).
        let again = inspect(
            api,
            dirty.as_bytes(),
            stand_in(),
            &policy(),
            &vault.scope("user:alice"),
        )
        .expect("again");
        assert_eq!(again.body, r.body, "{name}: not deterministic");

        // A clean copy goes through untouched.
        let clean_scope = VaultScope::detached();
        let c = inspect(
            api,
            base.as_bytes(),
            stand_in(),
            &Actions::default(),
            &clean_scope,
        )
        .expect("clean");
        assert!(
            c.body.is_none(),
            "{name}: clean request must be forwarded as is"
        );

        // Dry run: findings, no change, no block, vault untouched.
        let mut dry = policy();
        dry.dry_run = true;
        dry.secret = Action::Block;
        let ds = VaultScope::detached();
        let d = inspect(api, dirty.as_bytes(), stand_in(), &dry, &ds).expect("dry");
        assert!(d.body.is_none() && d.blocked.is_none() && ds.is_empty());
        assert!(d.findings.iter().all(|f| !f.applied));

        // Block: error in the API's shape naming rule and location, never the value.
        let mut blk = policy();
        blk.rules.insert("github-pat".into(), RuleAction::Block);
        let b = inspect(
            api,
            dirty.as_bytes(),
            stand_in(),
            &blk,
            &VaultScope::detached(),
        )
        .expect("block");
        let block = b.blocked.clone().expect("blocked");
        assert_eq!(block.rule_id, "github-pat");
        assert!(b.body.is_none());
        let (status, eb) = block_error(api, &block);
        assert_eq!(status, 403);
        let ev: serde_json::Value = serde_json::from_slice(&eb).expect("error JSON");
        let msg = ev["error"]["message"].as_str().expect("message");
        assert!(msg.contains("github-pat") && msg.contains(&block.location.path));
        assert!(!msg.contains(&github_token()));
        if api == Api::AnthropicMessages {
            assert_eq!(ev["type"], "error");
        }
        if api == Api::GeminiGenerateContent {
            assert_eq!(ev["error"]["status"], "PERMISSION_DENIED");
            assert_eq!(ev["error"]["code"], 403);
        }

        check_restore(api, &scope);
    }
}

/// The upstream echoes the placeholders; the agent must see the originals.
fn check_restore(api: Api, scope: &VaultScope) {
    let gh = scope
        .placeholder("GITHUB_TOKEN", &github_token())
        .to_string();
    let aws = scope
        .placeholder("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        .to_string();
    let mail = scope.placeholder("EMAIL", EMAIL).to_string();
    let text = format!("Found {gh} and {aws}; see [docs] and [REDACTED_NOT_OURS_3] - mail {mail}[");
    let args = format!(r#"{{"command":"curl -H 'token: {gh}' -u {mail} https://x.invalid/[a]"}}"#);
    let want_text = format!(
        "Found {} and {AWS_KEY_ID}; see [docs] and [REDACTED_NOT_OURS_3] - mail {EMAIL}[",
        github_token()
    );
    let want_args = format!(
        r#"{{"command":"curl -H 'token: {}' -u {EMAIL} https://x.invalid/[a]"}}"#,
        github_token()
    );

    // streaming: deltas of 5 characters, network chunks of 7 bytes
    let tparts: Vec<String> = text
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let aparts: Vec<String> = args
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let tp: Vec<&str> = tparts.iter().map(String::as_str).collect();
    let ap: Vec<&str> = aparts.iter().map(String::as_str).collect();
    let stream = stream_for(api, &tp, &ap);
    for chunk in [1, 7, 64, usize::MAX] {
        let out = restore_stream(api, scope, stream.as_bytes(), chunk.min(stream.len()));
        let (t, a) = client_view(api, &out);
        assert_eq!(t, want_text, "{api:?} stream text, chunk {chunk}");
        assert_eq!(a, want_args, "{api:?} stream args, chunk {chunk}");
        serde_json::from_str::<serde_json::Value>(&a).expect("restored arguments are JSON");
    }
    let mut r = StreamRestorer::new(api, scope.clone());
    let _ = r.push(stream.as_bytes());
    let _ = r.finish();
    let u = r.usage();
    assert!(
        u.input_tokens.is_some() && u.output_tokens.is_some() && u.cache_read_tokens.is_some(),
        "{api:?} usage {u:?}"
    );

    // non-streaming
    let js = |s: &str| serde_json::to_string(s).unwrap();
    let body = match api {
        Api::OpenAiChat => format!(
            r#"{{"id":"c","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":{},"tool_calls":[{{"id":"call_1","type":"function","function":{{"name":"sh","arguments":{}}}}}]}},"finish_reason":"tool_calls"}}],"usage":{{"prompt_tokens":5,"completion_tokens":6}}}}"#,
            js(&text),
            js(&args)
        ),
        Api::OpenAiResponses => format!(
            r#"{{"id":"resp","object":"response","output":[{{"type":"reasoning","id":"rs","summary":[{{"type":"summary_text","text":{}}}],"encrypted_content":"x"}},{{"type":"message","id":"m","role":"assistant","content":[{{"type":"output_text","text":{}}}]}},{{"type":"function_call","call_id":"c","name":"sh","arguments":{}}}],"usage":{{"input_tokens":5,"output_tokens":6}}}}"#,
            js(&text),
            js(&text),
            js(&args)
        ),
        Api::GeminiGenerateContent => format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":{},"thought":true}},{{"text":{}}},{{"functionCall":{{"name":"sh","args":{}}},"thoughtSignature":"CiQB"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":5,"candidatesTokenCount":6}}}}"#,
            js(&text),
            js(&text),
            args
        ),
        _ => format!(
            r#"{{"id":"msg","type":"message","content":[{{"type":"thinking","thinking":{},"signature":"sig"}},{{"type":"text","text":{}}},{{"type":"tool_use","id":"t","name":"Bash","input":{}}}],"usage":{{"input_tokens":5,"output_tokens":6}}}}"#,
            js(&text),
            js(&text),
            args
        ),
    };
    let out = restore_json(api, body.as_bytes(), scope)
        .expect("restore")
        .expect("changed");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("restored body is JSON");
    match api {
        Api::OpenAiChat => {
            assert_eq!(v["choices"][0]["message"]["content"], want_text.as_str());
            assert_eq!(
                v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
                want_args.as_str()
            );
        }
        Api::GeminiGenerateContent => {
            let parts = &v["candidates"][0]["content"]["parts"];
            assert_eq!(parts[0]["text"], text.as_str(), "thought untouched");
            assert_eq!(parts[1]["text"], want_text.as_str());
            let want: serde_json::Value = serde_json::from_str(&want_args).unwrap();
            assert_eq!(parts[2]["functionCall"]["args"], want);
        }
        Api::OpenAiResponses => {
            assert_eq!(
                v["output"][0]["summary"][0]["text"],
                text.as_str(),
                "reasoning untouched"
            );
            assert_eq!(v["output"][1]["content"][0]["text"], want_text.as_str());
            assert_eq!(v["output"][2]["arguments"], want_args.as_str());
        }
        _ => {
            assert_eq!(
                v["content"][0]["thinking"],
                text.as_str(),
                "signed thinking untouched"
            );
            assert_eq!(v["content"][1]["text"], want_text.as_str());
            let want: serde_json::Value = serde_json::from_str(&want_args).unwrap();
            assert_eq!(v["content"][2]["input"], want);
        }
    }
    assert_eq!(Usage::from_json(&out).output_tokens, Some(6));
    // Another scope cannot restore these placeholders.
    assert!(
        restore_json(api, body.as_bytes(), &VaultScope::detached())
            .expect("ok")
            .is_none()
    );
}

#[test]
fn claude_code_anthropic_messages() {
    run_capture("claude-code-2.1.332", Api::AnthropicMessages);
}

#[test]
fn codex_responses() {
    run_capture("codex-0.169.0", Api::OpenAiResponses);
}

#[test]
fn qwen_code_chat() {
    run_capture("qwen-code-0.24.4", Api::OpenAiChat);
}

#[test]
fn opencode_chat() {
    run_capture("opencode-1.18.33", Api::OpenAiChat);
}

/// Gemini CLI's `generateContent` and `streamGenerateContent` requests.
#[test]
fn gemini_cli_generate_content() {
    run_capture("gemini-cli-0.61.0", Api::GeminiGenerateContent);
}

#[test]
fn peek_captures() {
    for (name, model) in [
        ("claude-code-2.1.332", true),
        ("codex-0.169.0", true),
        ("qwen-code-0.24.4", true),
        ("opencode-1.18.33", true),
    ] {
        for (path, body) in capture(name) {
            let api = Api::from_path(&path).expect("api");
            let p = peek(api, body.as_bytes()).expect("peek");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(p.model.as_deref(), v["model"].as_str(), "{name}");
            assert_eq!(p.stream, v["stream"].as_bool().unwrap_or(false), "{name}");
            assert_eq!(p.model.is_some(), model);
        }
    }
}
