//! [`Detector`] for the detection engine of `airlock-detect`.

use std::sync::Arc;

use airlock_detect::{Engine, covert};

use crate::detector::{Category, Coverage, Detection, Detector, Replacement};

fn category(c: airlock_detect::Category) -> Category {
    match c {
        airlock_detect::Category::Secret => Category::Secret,
        airlock_detect::Category::Pii => Category::Pii,
        airlock_detect::Category::Covert => Category::Covert,
        airlock_detect::Category::Custom => Category::Custom,
    }
}

impl Detector for Engine {
    fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage {
        let scan = self.scan_all(text);
        out.extend(scan.findings.into_iter().map(|f| Detection {
            category: category(f.category),
            severity: Arc::from(f.severity.as_str()),
            start: f.start,
            end: f.end,
            preview: f.preview,
            label: f.placeholder_label,
            fingerprint: f.fingerprint,
            rule_id: f.rule_id,
        }));
        match scan.truncated {
            true => Coverage::Partial,
            false => Coverage::Whole,
        }
    }

    fn normalize(&self, text: &str, out: &mut Vec<Replacement>) {
        out.extend(covert::find(text).into_iter().map(|h| Replacement {
            start: h.start,
            end: h.end,
            text: h.replacement,
        }));
    }
}
