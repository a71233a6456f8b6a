//! Every rule's examples: each positive example is found by the full engine at exactly the
//! marked span («…», or the whole example without markers); no negative example yields a
//! finding of that rule. Plus pack-level checks (unique ids, counts, categories).

use std::collections::HashSet;

use airlock_detect::{Category, Engine};

/// Strip «» markers; return the text and the expected value span.
fn parse_example(ex: &str) -> (String, Vec<(usize, usize)>) {
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut open = None;
    for c in ex.chars() {
        match c {
            '\u{AB}' => open = Some(text.len()),
            '\u{BB}' => {
                if let Some(s) = open.take() {
                    spans.push((s, text.len()));
                }
            }
            _ => text.push(c),
        }
    }
    if spans.is_empty() {
        spans.push((0, text.len()));
    }
    (text, spans)
}

#[test]
fn every_rule_example_matches_exactly_and_negatives_do_not() {
    let engine = Engine::builtin().expect("built-in rules compile");
    let mut failures = Vec::new();
    for rule in engine.rules() {
        if rule.examples.is_empty() {
            failures.push(format!("{}: no positive example", rule.id));
        }
        if rule.negative_examples.is_empty() {
            failures.push(format!("{}: no negative example", rule.id));
        }
        for ex in &rule.examples {
            let (text, spans) = parse_example(ex);
            let found: Vec<(usize, usize)> = engine
                .scan(&text)
                .into_iter()
                .filter(|f| f.rule_id == rule.id)
                .map(|f| (f.start, f.end))
                .collect();
            for &(s, e) in &spans {
                if !found.contains(&(s, e)) {
                    failures.push(format!(
                        "{}: example {:?}: expected value at {s}..{e} ({:?}), found {:?}",
                        rule.id,
                        ex.chars().take(120).collect::<String>(),
                        &text[s..e].chars().take(60).collect::<String>(),
                        found
                    ));
                }
            }
            for f in &found {
                if !spans.contains(f) {
                    failures.push(format!(
                        "{}: example {:?}: unexpected extra finding at {:?}",
                        rule.id,
                        ex.chars().take(80).collect::<String>(),
                        f
                    ));
                }
            }
        }
        for ex in &rule.negative_examples {
            let hits: Vec<_> = engine
                .scan(ex)
                .into_iter()
                .filter(|f| f.rule_id == rule.id)
                .collect();
            if !hits.is_empty() {
                failures.push(format!(
                    "{}: negative example {:?} matched at {}..{}",
                    rule.id,
                    ex.chars().take(100).collect::<String>(),
                    hits[0].start,
                    hits[0].end
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule example failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// All positive examples in one large text (hundreds of candidate windows across every rule in
/// the engine's per-thread table): every example's value is found at its shifted span by its
/// rule, exactly as when the example is scanned alone. Then, on the same thread (the table is
/// reused), each example alone gives what it gives on a fresh thread.
#[test]
fn examples_in_one_large_text_are_found_as_alone() {
    let engine = Engine::builtin().expect("built-in rules compile");
    let mut text = String::new();
    let mut expected = Vec::new();
    for round in 0..3 {
        for rule in engine.rules() {
            for ex in &rule.examples {
                let (t, spans) = parse_example(ex);
                // Blank lines between examples keep their windows and contexts apart.
                text.push_str(&format!("\n\n// {round}\n\n"));
                let base = text.len();
                text.push_str(&t);
                for (s, e) in spans {
                    expected.push((rule.id.clone(), base + s, base + e));
                }
            }
        }
    }
    let found: HashSet<(std::sync::Arc<str>, usize, usize)> = engine
        .scan(&text)
        .into_iter()
        .map(|f| (f.rule_id, f.start, f.end))
        .collect();
    let missing: Vec<_> = expected.iter().filter(|x| !found.contains(*x)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} example values not found in the large text, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    let spans = |text: &str| -> Vec<(std::sync::Arc<str>, usize, usize)> {
        engine
            .scan(text)
            .into_iter()
            .map(|f| (f.rule_id, f.start, f.end))
            .collect()
    };
    let examples: Vec<String> = engine
        .rules()
        .iter()
        .flat_map(|r| r.examples.iter().map(|e| parse_example(e).0))
        .collect();
    let here: Vec<_> = examples.iter().map(|t| spans(t)).collect();
    let fresh: Vec<_> = std::thread::scope(|s| {
        s.spawn(|| examples.iter().map(|t| spans(t)).collect())
            .join()
            .unwrap()
    });
    assert_eq!(here, fresh);
}

#[test]
fn packs_are_complete() {
    let engine = Engine::builtin().unwrap();
    let mut ids = HashSet::new();
    for r in engine.rules() {
        assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
        assert!(!r.description.is_empty(), "{}: empty description", r.id);
    }
    let count = |c: Category| engine.rules().iter().filter(|r| r.category == c).count();
    assert!(
        count(Category::Secret) >= 120,
        "only {} secret rules",
        count(Category::Secret)
    );
    assert!(count(Category::Pii) >= 8);
    assert_eq!(count(Category::Covert), 6);
}

#[test]
fn findings_never_contain_the_value() {
    let engine = Engine::builtin().unwrap();
    for rule in engine.rules() {
        for ex in &rule.examples {
            let (text, _) = parse_example(ex);
            for f in engine.scan(&text) {
                let value = &text[f.start..f.end];
                if value.chars().count() >= 6 {
                    assert!(
                        !f.preview.contains(value),
                        "{}: preview holds the value",
                        f.rule_id
                    );
                    assert!(!f.fingerprint.contains(value));
                }
                assert_eq!(f.fingerprint.len(), 32);
            }
        }
    }
}

mod props {
    //! Properties over generated input: any bytes scan without panic into well-formed findings,
    //! and every rule's positive examples are still found, at the shifted span, inside
    //! arbitrary surrounding text.
    use super::parse_example;
    use airlock_detect::Engine;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn engine() -> &'static Engine {
        static E: OnceLock<Engine> = OnceLock::new();
        E.get_or_init(|| Engine::builtin().unwrap())
    }

    /// Fragments that anchor rules, so generated input reaches the regexes and validators,
    /// mixed with arbitrary bytes.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            prop::sample::select(vec![
                "ghp_",
                "AKIA",
                "sk-ant-api03-",
                "xoxb-",
                "glpat-",
                "password=",
                "token: ",
                "@",
                ".com",
                "+86 138",
                "4111 1111",
                "-----BEGIN ",
                "PRIVATE KEY-----",
                "eyJ",
                "://u:p@",
                "\u{200B}",
                "\u{E0041}\u{E0042}",
                "\u{202E}",
                "\u{02BC}",
                "\u{0430}",
                "\u{FE0F}\u{FE01}",
                "\n",
                "\"",
                "\\u00",
                " ",
                "0123456789",
                "\u{4E2D}\u{6587}",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_input_gives_well_formed_findings(
            parts in proptest::collection::vec(fragment(), 0..64)
        ) {
            let bytes: Vec<u8> = parts.concat();
            let found = engine().scan_bytes(&bytes);
            let mut last = 0;
            for f in &found {
                prop_assert!(f.start < f.end && f.end <= bytes.len(), "{}..{} of {}", f.start, f.end, bytes.len());
                prop_assert!(f.start >= last, "findings sorted by start");
                last = f.start;
                prop_assert!(f.line >= 1 && f.column >= 1);
                prop_assert_eq!(f.fingerprint.len(), 32);
                let value = &bytes[f.start..f.end];
                if value.len() >= 12 {
                    prop_assert!(
                        !f.preview.as_bytes().windows(value.len()).any(|w| w == value),
                        "{}: preview holds the whole value", f.rule_id
                    );
                }
            }
            // Deterministic.
            let again = engine().scan_bytes(&bytes);
            prop_assert_eq!(found.len(), again.len());
        }

        #[test]
        fn examples_are_found_in_any_surrounding_text(
            rule_pick in any::<prop::sample::Index>(),
            ex_pick in any::<prop::sample::Index>(),
            before in "[a-z ,;.]{0,200}",
            after in "[a-z ,;.]{0,200}",
        ) {
            let rules: Vec<_> = engine().rules().iter().filter(|r| !r.examples.is_empty()).collect();
            let rule = rules[rule_pick.index(rules.len())];
            let (text, spans) = parse_example(&rule.examples[ex_pick.index(rule.examples.len())]);
            let shift = before.len() + 1;
            let whole = format!("{before}\n{text}\n{after}");
            let found: Vec<(usize, usize)> = engine()
                .scan(&whole)
                .into_iter()
                .filter(|f| f.rule_id == rule.id)
                .map(|f| (f.start, f.end))
                .collect();
            for (s, e) in spans {
                prop_assert!(
                    found.contains(&(s + shift, e + shift)),
                    "{}: expected {}..{} in {:?}", rule.id, s + shift, e + shift, found
                );
            }
        }
    }
}
