//! End-to-end tests of the review library on the in-repo fixture packages (as directories and
//! as .tgz files built here), on executables built here, and on hostile archives.

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_review::{Decision, Input, Options, Report, Severity, diff, render, review};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(p: &Path) -> Report {
    review(&Input::Path(p.to_path_buf()), &Options::default()).expect("review")
}

fn has_finding(r: &Report, id: &str) -> bool {
    r.findings.iter().any(|f| f.id == id)
}

fn finding<'r>(r: &'r Report, id: &str) -> &'r airlock_review::Finding {
    r.findings.iter().find(|f| f.id == id).unwrap_or_else(|| {
        panic!(
            "no {id} in {:#?}",
            r.findings
                .iter()
                .map(|f| (&f.id, &f.detail))
                .collect::<Vec<_>>()
        )
    })
}

fn has_cap(r: &Report, id: &str) -> bool {
    r.capabilities.iter().any(|c| c.id == id)
}

fn host_class<'r>(r: &'r Report, host: &str) -> Option<&'r str> {
    r.hosts
        .iter()
        .find(|h| h.host == host)
        .map(|h| h.class.as_str())
}

/// Build an npm-style .tgz (members under `package/`) from a directory.
fn tgz_of(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    b.append_dir_all("package", dir).unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn covert_package_decodes_the_host_list_and_flags_the_chain() {
    let r = run(&fixture("covert-pkg"));
    // The XOR-and-base64 host list is decoded and shown.
    let d = r
        .decoded
        .iter()
        .find(|d| d.text.contains("collect.tz-metrics.cn"))
        .unwrap_or_else(|| panic!("decoded: {:#?}", r.decoded));
    assert!(
        d.text.contains("beacon.shadow-telemetry.ru") && d.text.contains("api.fp-sink.xyz"),
        "{}",
        d.text
    );
    assert!(
        d.method.contains("base64") && d.method.contains("xor(0x5a)"),
        "{}",
        d.method
    );
    assert_eq!(d.evidence.file, "index.js");
    assert_eq!(d.evidence.line, 9);
    let f = finding(&r, "obfuscation.decoded_hosts");
    assert_eq!(f.severity, Severity::High);
    assert!(f.detail.contains("beacon.shadow-telemetry.ru"));
    for h in [
        "collect.tz-metrics.cn",
        "beacon.shadow-telemetry.ru",
        "api.fp-sink.xyz",
    ] {
        assert_eq!(host_class(&r, h), Some("unknown"), "{h}");
    }
    assert!(
        r.hosts
            .iter()
            .find(|h| h.host == "beacon.shadow-telemetry.ru")
            .unwrap()
            .only_decoded
    );
    // The look-alike apostrophe chosen by time zone is a critical chain.
    let c = finding(&r, "chain.env_to_lookalike_text");
    assert_eq!(c.severity, Severity::Critical);
    assert!(
        c.detail.contains("time zone") && c.detail.contains("U+2019"),
        "{}",
        c.detail
    );
    assert_eq!(c.evidence[0].line, 13);
    // The bundler-style selector function and its environment-derived call.
    let sel = r
        .findings
        .iter()
        .find(|f| f.id == "chain.env_to_lookalike_text" && f.detail.contains("`pick(...)`"))
        .expect("selector chain");
    assert!(
        sel.detail.contains("U+02BC") && sel.detail.contains("BASE_URL"),
        "{}",
        sel.detail
    );
    assert!(r.findings.iter().any(|f| f.id == "hidden_text.lookalike_branch" && f.detail.contains("function `pick`")));
    // The time zone and host name go into a request.
    assert!(has_finding(&r, "chain.fingerprint_to_network"));
    assert!(has_finding(&r, "fingerprint.env_comparison"));
    assert!(
        has_cap(&r, "env.timezone") && has_cap(&r, "env.hostname") && has_cap(&r, "network.fetch")
    );
    assert_eq!(r.verdict.decision, Decision::Ban);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|x| x.contains("ban-covert-text-chain"))
    );
}

#[test]
fn the_same_package_as_a_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("pretty-quotes-1.0.0.tgz");
    tgz_of(&fixture("covert-pkg"), &t);
    let r = run(&t);
    assert_eq!(r.components[0].kind, "tarball");
    assert_eq!(r.components[0].name, "pretty-quotes");
    assert_eq!(r.components[0].version.as_deref(), Some("1.0.0"));
    assert!(
        r.components[0]
            .sha256
            .as_ref()
            .is_some_and(|h| h.len() == 64)
    );
    assert!(has_finding(&r, "chain.env_to_lookalike_text"));
    assert!(has_finding(&r, "obfuscation.decoded_hosts"));
    assert_eq!(r.verdict.decision, Decision::Ban);
}

#[test]
fn every_detector_fires_on_the_capability_zoo() {
    let r = run(&fixture("capabilities-pkg"));
    for c in [
        "network.fetch",
        "network.http",
        "network.dns",
        "network.socket",
        "network.websocket",
        "process.exec",
        "code.eval",
        "code.function_constructor",
        "code.vm",
        "code.dynamic_import",
        "native.addon",
        "install.script",
        "update.self",
        "credentials.ssh",
        "credentials.cloud",
        "credentials.keychain",
        "env.timezone",
        "env.hostname",
        "env.user",
        "env.network_interfaces",
        "env.machine_id",
        "env.locale",
        "env.base_url",
        "env.proxy",
        "telemetry.sentry",
        "telemetry.statsig",
        "telemetry.datadog",
        "remote_config.growthbook",
        "source_map.original_sources",
    ] {
        assert!(
            has_cap(&r, c),
            "missing capability {c}; have {:?}",
            r.capabilities.iter().map(|c| &c.id).collect::<Vec<_>>()
        );
    }
    // Hosts, classified from rules/hosts.toml.
    assert_eq!(host_class(&r, "api.anthropic.com"), Some("model_api"));
    assert_eq!(host_class(&r, "statsig.anthropic.com"), Some("telemetry"));
    assert_eq!(
        host_class(&r, "http-intake.logs.datadoghq.com"),
        Some("telemetry")
    );
    assert_eq!(host_class(&r, "o1.ingest.sentry.io"), Some("telemetry"));
    assert_eq!(host_class(&r, "cdn.growthbook.io"), Some("feature_flags"));
    assert_eq!(host_class(&r, "metrics.unknown-vendor.io"), Some("unknown"));
    assert_eq!(host_class(&r, "stream.unknown-vendor.io"), Some("unknown"));
    assert_eq!(host_class(&r, "zoo.example.org"), Some("local"));
    // Only in the source map's original sources.
    let sm = r
        .hosts
        .iter()
        .find(|h| h.host == "sourcemap-only.collector-service.net")
        .expect("source-map host");
    assert!(
        sm.evidence[0]
            .file
            .contains("bundle.js.map!/src/telemetry.ts"),
        "{}",
        sm.evidence[0].file
    );
    // Every obfuscation technique is decoded.
    let texts: Vec<&str> = r.decoded.iter().map(|d| d.text.as_str()).collect();
    for want in [
        "https://c2.hidden-host.xyz/x",
        "collect.soft-telemetry.com",
        "https://drop.example-exfil.net/upload",
        "https://hex.hidden-host.ru/",
        "https://xor.hidden-c2.xyz/k",
        "https://shift.hidden-host.xyz",
        "Asia/Shanghai,Europe/Moscow,Asia/Tehran",
        "This is a hidden instruction for the model",
    ] {
        assert!(
            texts.contains(&want),
            "missing decoded {want:?} in {texts:#?}"
        );
    }
    assert!(has_finding(&r, "obfuscation.decoded_hosts"));
    assert!(has_finding(&r, "obfuscation.decoded_fingerprint_list"));
    assert!(has_finding(&r, "obfuscation.decoded_strings"));
    // Chains.
    let cred = finding(&r, "chain.credential_to_network");
    assert!(cred.evidence.iter().any(|e| e.file == "lib/creds.js"));
    let fp = r
        .findings
        .iter()
        .filter(|f| f.id == "chain.fingerprint_to_network")
        .collect::<Vec<_>>();
    assert!(
        fp.iter()
            .any(|f| f.evidence[0].file == "lib/fingerprint.js"),
        "{fp:#?}"
    );
    // Comparisons of environment values with specific values.
    let cmp: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == "fingerprint.env_comparison")
        .map(|f| f.detail.as_str())
        .collect();
    for want in [
        "Europe/Moscow",
        "Asia/",
        "build-server-01.corp.internal",
        "https://api.anthropic.com",
    ] {
        assert!(
            cmp.iter().any(|d| d.contains(want)),
            "no comparison with {want}: {cmp:#?}"
        );
    }
    // Hidden text: raw invisible and tag characters (engine), escaped ones in a value, and a
    // look-alike branch without an environment condition.
    assert!(r.findings.iter().any(|f| f.id.starts_with("hidden_text.")
        && f.evidence[0].file == "lib/hidden.js"
        && f.evidence[0].line == 2));
    assert!(
        r.findings
            .iter()
            .any(|f| f.id.starts_with("hidden_text.") && f.evidence[0].line == 3)
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.id.starts_with("hidden_text.") && f.evidence[0].line == 4)
    );
    let la = finding(&r, "hidden_text.lookalike_branch");
    assert_eq!(la.severity, Severity::Medium);
    assert!(!has_finding(&r, "chain.env_to_lookalike_text"));
    // Snippets make invisible characters visible.
    assert!(
        r.findings
            .iter()
            .any(|f| f.evidence.iter().any(|e| e.snippet.contains("\\u{200B}")))
    );
    // Embedded secrets come from the engine and are never printed whole.
    let s = r
        .findings
        .iter()
        .find(|f| f.id.starts_with("secret."))
        .expect("secret finding");
    assert!(s.severity >= Severity::High);
    let json = render::json(&r);
    assert!(
        !json.contains("ghp_R2d4Xq9sLmN3vB7tY1wZ8kP0cJ5hF6gE2aDx"),
        "secret leaked into the report"
    );
    // Install script.
    assert!(
        r.components[0]
            .install_scripts
            .iter()
            .any(|(k, v)| k == "postinstall" && v.contains("setup.js"))
    );
    assert!(r.verdict.decision >= Decision::Review);
}

#[test]
fn benign_package_is_approved() {
    let r = run(&fixture("benign-pkg"));
    assert!(
        r.findings.iter().all(|f| f.severity < Severity::Medium),
        "{:#?}",
        r.findings
    );
    assert_eq!(r.verdict.decision, Decision::Approve, "{:?}", r.verdict);
    assert!(r.stats.js_files_parsed >= 1);
}

#[test]
fn unsafe_members_are_refused_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("evil.tgz");
    let f = std::fs::File::create(&out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let add = |b: &mut tar::Builder<_>,
               name: &[u8],
               data: &[u8],
               kind: tar::EntryType,
               link: Option<&str>| {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(
        &mut b,
        b"package/package.json",
        br#"{"name":"evil","version":"1.0.0"}"#,
        tar::EntryType::Regular,
        None,
    );
    add(
        &mut b,
        b"package/../../etc/cron.d/x",
        b"* * * * * root sh",
        tar::EntryType::Regular,
        None,
    );
    add(
        &mut b,
        b"/etc/passwd",
        b"root:x:0:0",
        tar::EntryType::Regular,
        None,
    );
    add(
        &mut b,
        b"package/link",
        b"",
        tar::EntryType::Symlink,
        Some("/home/user/.ssh/id_rsa"),
    );
    add(
        &mut b,
        b"package/index.js",
        b"fetch('https://ok.example.com')",
        tar::EntryType::Regular,
        None,
    );
    b.into_inner().unwrap().finish().unwrap();
    let r = run(&out);
    let bad: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == "package.unsafe_member")
        .map(|f| f.detail.as_str())
        .collect();
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad.iter().any(|d| d.contains("traversal")));
    assert!(bad.iter().any(|d| d.contains("link")));
    assert!(has_cap(&r, "network.fetch"));
    assert_eq!(r.components[0].files, 2);
}

#[test]
fn compression_bombs_and_garbage_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB of zeros compresses to ~64 KiB: over a ratio cap of 100.
    let out = tmp.path().join("bomb.tgz");
    let f = std::fs::File::create(&out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
    let mut b = tar::Builder::new(gz);
    let zeros = vec![0u8; 64 << 20];
    let mut h = tar::Header::new_gnu();
    h.set_size(zeros.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "package/zeros.bin", &zeros[..])
        .unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let opts = Options {
        limits: airlock_review::Limits {
            max_ratio: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = review(&Input::Path(out), &opts).unwrap_err().to_string();
    assert!(e.contains("cap"), "{e}");
    // A truncated gzip.
    let trunc = tmp.path().join("t.tgz");
    let mut whole = Vec::new();
    {
        let mut gz = flate2::write::GzEncoder::new(&mut whole, flate2::Compression::default());
        gz.write_all(&[7u8; 5000]).unwrap();
        gz.finish().unwrap();
    }
    std::fs::write(&trunc, &whole[..whole.len() / 2]).unwrap();
    assert!(review(&Input::Path(trunc), &Options::default()).is_err());
    // A missing path.
    let e = review(&Input::Path(tmp.path().join("nope")), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

/// A Bun-style module graph (record and Offsets sizes as given), as in `bun build --compile`.
fn bun_graph(mods: &[(&str, &[u8])], record: usize, offsets: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut ptrs = Vec::new();
    for (n, c) in mods {
        let no = raw.len();
        raw.extend_from_slice(n.as_bytes());
        let co = raw.len();
        raw.extend_from_slice(c);
        ptrs.push((no, n.len(), co, c.len()));
    }
    let list_off = raw.len();
    for (no, nl, co, cl) in ptrs {
        let mut rec = vec![0u8; record];
        for (i, v) in [no, nl, co, cl].iter().enumerate() {
            rec[i * 4..i * 4 + 4].copy_from_slice(&(*v as u32).to_le_bytes());
        }
        raw.extend_from_slice(&rec);
    }
    let list_len = raw.len() - list_off;
    let mut out = (raw.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&raw);
    let mut off = vec![0u8; offsets];
    off[0..8].copy_from_slice(&(raw.len() as u64).to_le_bytes());
    off[8..12].copy_from_slice(&(list_off as u32).to_le_bytes());
    off[12..16].copy_from_slice(&(list_len as u32).to_le_bytes());
    out.extend_from_slice(&off);
    out.extend_from_slice(b"\n---- Bun! ----\n");
    out
}

fn elf_with_section(name: &[u8], data: &[u8]) -> Vec<u8> {
    use object::write::{Object, StandardSegment};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(
        obj.segment_name(StandardSegment::Text).to_vec(),
        b".text".to_vec(),
        SectionKind::Text,
    );
    obj.append_section_data(text, &[0xc3; 16], 16);
    let s = obj.add_section(Vec::new(), name.to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(s, data, 8);
    obj.write().unwrap()
}

#[test]
fn bun_executable_embedded_javascript_is_reviewed() {
    let covert = std::fs::read(fixture("covert-pkg/index.js")).unwrap();
    for (record, offsets) in [(36, 32), (52, 40)] {
        let graph = bun_graph(
            &[
                ("/$bunfs/root/cli.js", &covert),
                ("/$bunfs/root/yoga.wasm", b"\0asm\x01\0\0\0"),
                ("/$bunfs/root/pty.node", b"\x7fELF"),
            ],
            record,
            offsets,
        );
        let elf = elf_with_section(b".bun", &graph);
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("agent");
        std::fs::write(&p, &elf).unwrap();
        let r = run(&p);
        assert_eq!(r.components[0].kind, "executable");
        assert_eq!(
            r.components[0].embedded_format.as_deref(),
            Some("bun"),
            "{:?}",
            r.notes
        );
        let c = finding(&r, "chain.env_to_lookalike_text");
        assert_eq!(c.evidence[0].file, "agent!/$bunfs/root/cli.js");
        assert!(has_finding(&r, "obfuscation.decoded_hosts"));
        assert!(has_cap(&r, "code.wasm") && has_cap(&r, "native.addon"));
        assert_eq!(r.verdict.decision, Decision::Ban);
    }
}

#[test]
fn plain_executable_falls_back_to_strings() {
    let elf = elf_with_section(
        b".rodata.str",
        b"\0\0https://plain-binary.unknown-vendor.io/beacon\0\0/home/u/.aws/credentials\0",
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("tool");
    std::fs::write(&p, &elf).unwrap();
    let r = run(&p);
    assert_eq!(r.components[0].embedded_format.as_deref(), Some("strings"));
    assert_eq!(
        host_class(&r, "plain-binary.unknown-vendor.io"),
        Some("unknown")
    );
    assert!(has_cap(&r, "credentials.cloud"));
    assert!(r.notes.iter().any(|n| n.contains("strings only")));
}

#[test]
fn unparseable_javascript_falls_back_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("broken.js"),
        "function ( { 'https://broken.unknown-vendor.io/x' ((((",
    )
    .unwrap();
    let r = run(tmp.path());
    assert_eq!(r.stats.js_parse_failures, 1);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("broken.js") && n.contains("strings extracted")),
        "{:?}",
        r.notes
    );
    assert_eq!(host_class(&r, "broken.unknown-vendor.io"), Some("unknown"));
}

#[test]
fn diff_shows_what_a_release_added() {
    let old = run(&fixture("benign-pkg"));
    let new = run(&fixture("covert-pkg"));
    let d = diff(&old, &new);
    assert!(
        d.added_hosts
            .iter()
            .any(|h| h.starts_with("beacon.shadow-telemetry.ru")),
        "{:?}",
        d.added_hosts
    );
    assert!(d.added_capabilities.contains(&"env.timezone".to_string()));
    assert!(
        d.added_findings
            .iter()
            .any(|f| f.id == "chain.env_to_lookalike_text")
    );
    assert!(
        d.added_decoded
            .iter()
            .any(|t| t.contains("collect.tz-metrics.cn"))
    );
    assert_eq!(d.new_verdict, Some(Decision::Ban));
    let same = diff(&new, &new);
    assert!(same.nothing_added() && same.removed_findings.is_empty());
    let text = render::diff_human(&d, false);
    assert!(text.contains("+ beacon.shadow-telemetry.ru"));
}

#[test]
fn every_format_renders_and_html_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("x.js"),
        "fetch('https://evil.unknown-vendor.io/<script>alert(1)</script>')",
    )
    .unwrap();
    let r = run(tmp.path());
    let h = render::html(&r);
    assert!(h.starts_with("<!DOCTYPE html>") && h.contains("<style>"));
    assert!(!h.contains("<script>alert"), "unescaped HTML");
    assert!(h.contains("&lt;script&gt;"));
    let s: serde_json::Value = serde_json::from_str(&render::sarif(&r)).unwrap();
    assert_eq!(s["version"], "2.1.0");
    let j: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(j["schema_version"], 1);
    assert!(
        j["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == "evil.unknown-vendor.io")
    );
    let text = render::human(&r, false);
    assert!(text.contains("verdict") && !text.contains("\x1b["));
    assert!(render::human(&r, true).contains("\x1b["));
}
