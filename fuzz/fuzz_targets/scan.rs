//! Fuzz the detection engine: arbitrary bytes through `scan_bytes`, and through `scan` and
//! `covert::normalize` when they are UTF-8. Checks the invariants callers rely on, and that the
//! engine's shortcuts (ASCII-mode regexes, windows split at cut bytes, the digit gate, skipping
//! digit-sparse blocks, stepping over runs of letters in the covert pass) find exactly what the
//! engine finds without them.
#![no_main]

use std::sync::LazyLock;

use airlock_detect::{Engine, covert};
use libfuzzer_sys::fuzz_target;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::builtin().expect("built-in rules compile"));
static PLAIN: LazyLock<Engine> = LazyLock::new(|| {
    ["ascii-regexes", "split-windows", "dense-digits", "digit-gate", "covert-runs"]
        .into_iter()
        .fold(Engine::builtin().expect("built-in rules compile"), Engine::without_shortcut)
});

fuzz_target!(|data: &[u8]| {
    let findings = ENGINE.scan_bytes(data);
    assert_eq!(findings, PLAIN.scan_bytes(data), "a shortcut changed the findings");
    let mut last = 0;
    for f in &findings {
        assert!(f.start <= f.end && f.end <= data.len(), "range out of bounds");
        assert!(f.start >= last, "findings not sorted");
        last = f.start;
        assert!(f.line >= 1 && f.column >= 1);
        assert_eq!(f.fingerprint.len(), 32);
        let value = &data[f.start..f.end];
        if value.len() >= 12 {
            assert!(!f.preview.as_bytes().windows(value.len()).any(|w| w == value), "preview holds the value");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let again = ENGINE.scan(text);
        assert_eq!(again.len(), findings.len());
        for f in &again {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        let n = covert::normalize(text);
        // Normalising is idempotent on what it changed.
        if let std::borrow::Cow::Owned(s) = &n {
            assert!(s.len() <= text.len() * 3);
        }
    }
});
