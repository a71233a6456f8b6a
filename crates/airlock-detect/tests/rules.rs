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
