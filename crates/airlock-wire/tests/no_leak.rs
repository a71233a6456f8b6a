//! No injected value reaches logs, errors or Debug output.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use airlock_wire::*;
use common::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn values_never_logged_or_printed() {
    let buf = Buf::default();
    let b2 = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || b2.clone())
        .finish();
    let mut printed = String::new();
    tracing::subscriber::with_default(subscriber, || {
        let vault = Vault::default();
        let scope = vault.scope("user:alice");
        let policy = Actions {
            pii: Action::Redact,
            ..Actions::default()
        };
        let (_, base) = capture("claude-code-2.1.332").remove(0);
        let dirty_json = serde_json::to_string(&dirty_text()).unwrap();
        let lit = &dirty_json[1..dirty_json.len() - 1];
        let at = base.find("\"text\":\"").unwrap() + 8;
        let body = format!("{}{lit}{}", &base[..at], &base[at..]);
        for det in [stand_in() as &dyn Detector, engine() as &dyn Detector] {
            let r = inspect(
                Api::AnthropicMessages,
                body.as_bytes(),
                det,
                &policy,
                &scope,
            )
            .unwrap();
            printed.push_str(&format!("{r:?}\n{}\n", serde_json::to_string(&r).unwrap()));
            // a block names the rule and location only
            let mut blk = policy.clone();
            blk.secret = Action::Block;
            let b = inspect(Api::AnthropicMessages, body.as_bytes(), det, &blk, &scope).unwrap();
            let (_, eb) = block_error(Api::AnthropicMessages, &b.blocked.unwrap());
            printed.push_str(&String::from_utf8_lossy(&eb));
        }
        // malformed bodies that contain the values: errors carry offsets only
        let broken = format!("{{\"messages\":[\"{}\" {}", github_token(), AWS_SECRET);
        for api in [
            Api::AnthropicMessages,
            Api::OpenAiChat,
            Api::OpenAiResponses,
        ] {
            let e = inspect(api, broken.as_bytes(), stand_in(), &policy, &scope).unwrap_err();
            printed.push_str(&format!("{e} {e:?}\n"));
            let e = peek(api, broken.as_bytes()).unwrap_err();
            printed.push_str(&format!("{e} {e:?}\n"));
        }
        // streaming, including an oversized event that is passed through with a warning
        let gh = scope
            .placeholder("GITHUB_TOKEN", &github_token())
            .to_string();
        let stream = anthropic_stream(&["x ", &gh[..5], &gh[5..]], &["{}"]);
        let mut r =
            StreamRestorer::new(Api::AnthropicMessages, scope.clone()).with_max_event_bytes(1024);
        let big = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}{}\"}}}}\n\n",
            "y".repeat(2000),
            gh
        );
        let mut out = r.push(stream.as_bytes());
        for c in big.as_bytes().chunks(100) {
            out.extend(r.push(c));
        }
        out.extend(r.finish());
        assert!(
            String::from_utf8_lossy(&out).contains(&github_token()),
            "restored for the client"
        );
        assert_eq!(r.stats().oversize, 1);
        printed.push_str(&format!(
            "{r:?} {scope:?} {vault:?} {:?}\n",
            scope.lookup(&gh)
        ));
    });
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("oversized"), "the capture works: {logs}");
    for v in secret_values() {
        assert!(!logs.contains(&v), "value {}… in logs", &v[..4]);
        assert!(
            !printed.contains(&v),
            "value {}… in Debug/Display/JSON output",
            &v[..4]
        );
    }
    assert!(!printed.contains(TAGS) && !printed.contains(ZW));
}
