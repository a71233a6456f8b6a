//! No injected value reaches the gateway's logs. Its own test binary: tracing's per-callsite
//! interest cache is process-wide, so a scoped subscriber only sees everything when no other
//! test in the process registered the callsites first.

mod common;

use common::*;

#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything the gateway logs (all levels, every target) while redacting, restoring and
/// blocking: no injected value appears, and the findings are there by rule id.
#[tokio::test]
async fn logs_never_contain_injected_values() {
    let buf = LogBuf::default();
    let b2 = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || b2.clone())
        .finish();
    // current-thread runtime: the gateway's tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = Mock::start().await;
    let gw = start_gateway(&base_config(mock.addr, "")).await;
    let c = with_mock(&claude_with_secrets(), "echo-GITHUB");
    let (_, _, body) = replay(&c, gw.addr).await;
    assert!(sse_text(&body).contains(&github_token()), "restored");
    let gw2 = start_gateway(&base_config(mock.addr, "[redaction]\nsecret = \"block\"\n")).await;
    let (status, _, _) = replay(&c, gw2.addr).await;
    assert_eq!(status, 403);
    drop(gw);
    drop(gw2);
    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).to_string();
    assert!(
        logs.contains("finding_rules="),
        "the request line was captured: {}",
        logs.lines()
            .filter(|l| l.contains("airlock_gateway"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(logs.contains("github-pat"), "rule ids are logged");
    for value in [github_token().as_str(), AWS_KEY_ID] {
        assert!(!logs.contains(value), "a value reached the logs");
    }
}
