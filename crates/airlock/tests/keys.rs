//! `airlock keys` end to end: the real binary against a key store in a temp dir.

use assert_cmd::Command;

fn airlock() -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_CONFIG").env_remove("AIRLOCK_LOG");
    c
}

#[test]
fn create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = airlock()
        .args([
            "keys",
            "create",
            "--user",
            "alice",
            "--team",
            "payments",
            "--data-dir",
            d,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("ak_live_") && key.len() > 40, "{key}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"));

    let out = airlock()
        .args(["keys", "list", "--format", "json", "--data-dir", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(&key), "list never shows the key");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v[0]["user"], "alice");
    assert_eq!(v[0]["team"], "payments");
    assert!(v[0]["revoked_at"].is_null());
    let id = v[0]["id"].as_str().unwrap().to_string();

    let out = airlock()
        .args(["keys", "list", "--data-dir", d])
        .output()
        .unwrap();
    let human = String::from_utf8(out.stdout).unwrap();
    assert!(human.contains(&id) && human.contains("alice") && !human.contains(&key));

    let out = airlock()
        .args(["keys", "revoke", &id, "--data-dir", d])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = airlock()
        .args(["keys", "list", "--format", "jsonl", "--data-dir", d])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(v["revoked_at"].is_i64());

    let out = airlock()
        .args(["keys", "revoke", "key_doesnotexist", "--data-dir", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key_doesnotexist"));
}

#[test]
fn bad_user_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = airlock()
        .args([
            "keys",
            "create",
            "--user",
            "a b",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user"));
}
