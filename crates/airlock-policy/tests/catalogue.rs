//! The embedded catalogue identifies every real captured agent request.

use airlock_policy::Catalogue;
use http::{HeaderMap, HeaderName, HeaderValue};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/agents"
);

struct Captured {
    headers: HeaderMap,
    body: Vec<u8>,
}

fn direct_requests(file: &str) -> Vec<Captured> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect("fixture present");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
        if v["via"] != "direct" {
            continue;
        }
        let mut headers = HeaderMap::new();
        for pair in v["headers"].as_array().expect("headers") {
            let name = HeaderName::from_bytes(pair[0].as_str().expect("name").as_bytes())
                .expect("header name");
            let value =
                HeaderValue::from_str(pair[1].as_str().expect("value")).expect("header value");
            headers.append(name, value);
        }
        out.push(Captured {
            headers,
            body: v["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
        });
    }
    out
}

#[test]
fn identifies_every_captured_agent_with_its_version() {
    let cat = Catalogue::embedded();
    assert!(cat.agents().len() >= 10, "catalogue has the major agents");
    for (file, id, version) in [
        ("claude-code-2.1.332.jsonl", "claude-code", "2.1.332"),
        ("codex-0.169.0.jsonl", "codex", "0.169.0"),
        ("qwen-code-0.24.4.jsonl", "qwen-code", "0.24.4"),
        ("opencode-1.18.33.jsonl", "opencode", "1.18.33"),
        ("gemini-cli-0.61.0.jsonl", "gemini-cli", "0.61.0"),
    ] {
        let reqs = direct_requests(file);
        assert!(!reqs.is_empty(), "{file} has model requests");
        for r in reqs {
            let id_ = cat.identify(&r.headers, &r.body);
            assert_eq!(id_.agent_id(), id, "{file}");
            assert_eq!(id_.version.as_deref(), Some(version), "{file}");
            assert_eq!(id_.signal, "user-agent", "{file}");
        }
    }
}

#[test]
fn weaker_signals_still_identify() {
    let cat = Catalogue::embedded();
    let claude = direct_requests("claude-code-2.1.332.jsonl").remove(0);
    // Without the User-Agent: the session header identifies, the billing line gives the version.
    let mut h = claude.headers.clone();
    h.remove(http::header::USER_AGENT);
    let id = cat.identify(&h, &claude.body);
    assert_eq!(id.agent_id(), "claude-code");
    assert_eq!(id.version.as_deref(), Some("2.1.332"));
    assert!(id.signal.starts_with("header:"), "{}", id.signal);
    // Without any header: the body fingerprint alone.
    let id = cat.identify(&HeaderMap::new(), &claude.body);
    assert_eq!(id.agent_id(), "claude-code");
    assert_eq!(id.signal, "body");

    let qwen = direct_requests("qwen-code-0.24.4.jsonl").remove(0);
    let id = cat.identify(&HeaderMap::new(), &qwen.body);
    assert_eq!(id.agent_id(), "qwen-code");
    assert_eq!(id.version, None);
}

#[test]
fn unknown_requests_are_unknown() {
    let cat = Catalogue::embedded();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("curl/8.5.0"),
    );
    let id = cat.identify(
        &h,
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(id.agent_id(), "unknown");
    assert_eq!(id.signal, "none");
    assert_eq!(id.display(), "an unidentified tool");
}

#[test]
fn codex_cli_rs_user_agent_form() {
    let cat = Catalogue::embedded();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("codex_cli_rs/0.41.0 (Mac OS 15.0.0; arm64) iTerm.app/3.5.0"),
    );
    let id = cat.identify(&h, b"");
    assert_eq!(
        (id.agent_id(), id.version.as_deref()),
        ("codex", Some("0.41.0"))
    );
}

#[test]
fn catalogue_errors_name_the_problem() {
    let bad = r#"
schema_version = 1
[[agent]]
id = "x"
name = "X"
vendor = "V"
identify = [{ kind = "user_agnet", pattern = "x" }, { kind = "body", pattern = "(" }]
"#;
    let err = Catalogue::from_toml(bad, "agents.toml")
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("agent[0].identify[0]") && err.contains("unknown kind"),
        "{err}"
    );
    assert!(
        err.contains("agent[0].identify[1]") && err.contains("invalid pattern"),
        "{err}"
    );

    let typo = "schema_version = 1\n[[agent]]\nid = \"x\"\nname = \"X\"\nvendor = \"V\"\nbinaries = [\"x\"]\nbinarys = []\n";
    let err = Catalogue::from_toml(typo, "agents.toml")
        .expect_err("unknown key")
        .to_string();
    assert!(err.starts_with("agents.toml:7:"), "{err}");
    assert!(err.contains("did you mean \"binaries\""), "{err}");
}
