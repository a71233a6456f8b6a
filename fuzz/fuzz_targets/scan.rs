//! Fuzz the detection engine: arbitrary bytes through `scan_bytes`, and through `scan` and
//! `covert::normalize` when they are UTF-8. Checks the invariants callers rely on, and that the
//! engine's shortcuts (ASCII-mode regexes, windows split at cut bytes, the digit gate, skipping
//! digit-sparse blocks, stepping over runs of letters in the covert pass, reading only the regions
//! around non-ASCII bytes in it) find exactly what the engine finds without them. An input with
//! record separators (0x1E) is also scanned with its pieces far apart, so that one text holds
//! several such regions and several stretches of the engine's pass.
#![no_main]

use std::sync::LazyLock;

use airlock_detect::{Engine, covert};
use libfuzzer_sys::fuzz_target;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::builtin().expect("built-in rules compile"));
static PLAIN: LazyLock<Engine> = LazyLock::new(|| {
    ["ascii-regexes", "split-windows", "dense-digits", "digit-gate", "covert-runs", "covert-pages"]
        .into_iter()
        .fold(Engine::builtin().expect("built-in rules compile"), Engine::without_shortcut)
});

fuzz_target!(|data: &[u8]| {
    let findings = ENGINE.scan_bytes(data);
    assert_eq!(findings, PLAIN.scan_bytes(data), "a shortcut changed the findings");
    if data.contains(&0x1E) {
        let mut spread = Vec::new();
        for piece in data.split(|&b| b == 0x1E) {
            // Gaps around the covert reach, a page (4 KB) and a stretch (64 KB).
            let gap = [0, 1, 63, 250, 4_090, 4_200, 8_200, 66_000][piece.first().map_or(0, |&b| b as usize % 8)];
            spread.extend(b"word ".iter().cycle().take(gap));
            spread.extend_from_slice(piece);
        }
        assert_eq!(ENGINE.scan_bytes(&spread), PLAIN.scan_bytes(&spread), "a shortcut changed the findings (spread)");
    }
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
