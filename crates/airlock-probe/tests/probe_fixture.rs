//! End to end: probe runs the fixture agent (a real process speaking real HTTP to the
//! recorder) under the default matrix and must find, and attribute, exactly the differences
//! the agent hides — and nothing when the trick is off.

use std::collections::BTreeSet;
use std::time::Duration;

use airlock_probe::differ::Change;
use airlock_probe::recorder::Via;
use airlock_probe::{FindingKind, HostnameMode, Matrix, ProbeOptions, Report};

const FIXTURE: &str = env!("CARGO_BIN_EXE_airlock-fixture-agent");

fn probe(trick: bool) -> Report {
    let mut cmd = vec![FIXTURE.to_string()];
    if trick {
        cmd.push("--trick".into());
    }
    let mut opts = ProbeOptions::new(cmd, Matrix::embedded().unwrap());
    // The fixture speaks Anthropic Messages and honours ANTHROPIC_BASE_URL, like Claude Code.
    opts.agent = Some("claude-code".into());
    opts.timeout = Duration::from_secs(30);
    opts.jobs = 4;
    opts.hostname = HostnameMode::Auto;
    airlock_probe::probe_blocking(opts).expect("probe runs")
}

fn values(f: &airlock_probe::Finding) -> BTreeSet<&str> {
    f.flipped_by.iter().map(|x| x.value.as_str()).collect()
}

#[test]
fn trick_is_found_and_attributed_to_tz_and_base_url_host() {
    let r = probe(true);
    let text = r.to_human(false);
    assert_eq!(r.exit_code(), 1, "{text}");

    // Every run reached the recorder with exactly one model request.
    for run in &r.runs {
        assert_eq!(run.model_requests, 1, "{}: {text}", run.label);
        assert_eq!(
            run.exit_code,
            Some(0),
            "{}: {}",
            run.label,
            run.stderr_excerpt
        );
    }
    // Non-loopback base URLs reached the recorder through the proxy.
    let cn = r
        .runs
        .iter()
        .find(|x| x.value.as_deref() == Some("api.corp-example.cn"))
        .unwrap();
    assert_eq!(cn.api_via, vec![Via::Proxy]);
    // The telemetry attempt is listed by host in every run.
    assert!(
        r.runs.iter().all(|x| x
            .other_hosts
            .contains_key("telemetry.fixture-agent.invalid:443")),
        "{text}"
    );
    // The session id and start time vary between identical runs and were learned as volatile.
    assert!(
        r.volatile.iter().any(|v| v.contains("system[0].text")),
        "{:?}",
        r.volatile
    );
    assert!(
        r.volatile.iter().any(|v| v.contains("x-request-id")),
        "{:?}",
        r.volatile
    );

    assert_eq!(
        r.findings.len(),
        2,
        "exactly the two hidden differences: {text}"
    );

    let tz = r
        .findings
        .iter()
        .find(|f| f.dimension == "TZ")
        .expect("TZ finding");
    assert_eq!(tz.kind, FindingKind::Covert, "{text}");
    assert_eq!(tz.request, "POST /v1/messages #1");
    assert_eq!(tz.path, "system[0].text");
    assert_eq!(values(tz), BTreeSet::from(["Asia/Shanghai", "Asia/Urumqi"]));
    assert_eq!(
        tz.not_flipped_by
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["Europe/Berlin", "America/New_York"])
    );
    let Change::Text { hunks } = &tz.flipped_by[0].change else {
        panic!("text change expected: {text}")
    };
    assert!(hunks.iter().all(|h| h.covert));
    assert!(
        hunks
            .iter()
            .flat_map(|h| &h.chars)
            .all(|c| c.to_string() == "U+0027 APOSTROPHE → U+2019 RIGHT SINGLE QUOTATION MARK"),
        "{text}"
    );
    assert_eq!(
        hunks.len(),
        5,
        "airlock's, Today's, It's, don't, weren't: {text}"
    );
    assert!(
        text.contains("U+0027 APOSTROPHE → U+2019 RIGHT SINGLE QUOTATION MARK at :"),
        "{text}"
    );

    let host = r
        .findings
        .iter()
        .find(|f| f.dimension == "base-URL host")
        .expect("host finding");
    assert_eq!(host.kind, FindingKind::Plain, "{text}");
    assert_eq!(host.path, "system[0].text");
    assert_eq!(
        values(host),
        BTreeSet::from([
            "api.corp-example.cn",
            "llm.example.ru",
            "llm-gateway.acme-corp.com",
            "api.deepseek.com",
            "api.moonshot.cn",
            "dashscope.aliyuncs.com"
        ])
    );
    let not: BTreeSet<&str> = host.not_flipped_by.iter().map(String::as_str).collect();
    assert_eq!(
        not,
        BTreeSet::from(["localhost", "api.anthropic.com"]),
        "{text}"
    );
    let Change::Text { hunks } = &host.flipped_by[0].change else {
        panic!("text change expected")
    };
    let (old, new): (String, String) = hunks.iter().map(|h| (h.old.clone(), h.new.clone())).unzip();
    assert!(!hunks.iter().any(|h| h.covert));
    assert!(new.contains('/') && !old.contains('/'), "{old:?} → {new:?}");

    // The other renderings hold the same findings.
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["verdict"], "environment_dependent");
    assert_eq!(json["summary"]["covert"], 1);
    assert_eq!(json["summary"]["plain"], 1);
    let html = r.to_html();
    assert!(html.contains("U+2019 RIGHT SINGLE QUOTATION MARK"));
    assert!(!html.contains("<script"));
}

#[test]
fn without_the_trick_the_report_is_clean() {
    let r = probe(false);
    let text = r.to_human(false);
    assert_eq!(r.exit_code(), 0, "{text}");
    assert!(r.findings.is_empty(), "{text}");
    assert!(text.contains("CLEAN"), "{text}");
    assert!(r.runs.iter().all(|x| x.model_requests == 1), "{text}");
    // Clean although every run had its own session id, start time, port and directory.
    assert!(!r.volatile.is_empty());
    assert!(
        r.runs.len() >= 20,
        "the default matrix has 20+ runs: {}",
        r.runs.len()
    );
}

#[test]
fn an_agent_that_never_calls_the_api_is_an_error_not_a_clean_report() {
    // `/bin/sh -c true` exists on every Unix CI machine and sends nothing.
    let mut m = Matrix::embedded().unwrap();
    m.tz.values.truncate(1);
    m.locale.values.clear();
    m.base_host.values.clear();
    let mut opts = ProbeOptions::new(vec!["/bin/sh".into(), "-c".into(), "true".into()], m);
    opts.no_catalogue = true;
    opts.hostname = HostnameMode::Off;
    opts.baseline_runs = 2;
    let err = airlock_probe::probe_blocking(opts).unwrap_err();
    assert!(err.to_string().contains("no model request"), "{err}");
}

#[test]
fn a_hanging_agent_is_killed_at_the_timeout_with_its_children() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let marker = tempfile::tempdir().unwrap();
    let flag = marker.path().join("survived");
    let script = format!("(sleep 3; touch '{}') & sleep 60", flag.display());
    let out = rt.block_on(async {
        let cmd = airlock_probe::runner::AgentCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script],
            env: vec![],
        };
        let spec = airlock_probe::runner::RunSpec {
            settings: Matrix::embedded().unwrap().baseline(),
            timeout: Duration::from_millis(500),
            output_limit: 1024,
            unshare: None,
        };
        airlock_probe::runner::run_once(&cmd, &spec).await.unwrap()
    });
    assert!(out.timed_out);
    assert!(out.duration_ms < 5_000, "{}", out.duration_ms);
    std::thread::sleep(Duration::from_millis(3_500));
    assert!(!flag.exists(), "a child of the agent outlived the kill");
}
