//! What appeared and disappeared between two reviews: capabilities, hosts, decoded strings and
//! findings (compared by id and detail, not position, since code moves between versions).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{Decision, Report, Severity};

/// A finding as compared across versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FindingKey {
    pub severity: Severity,
    pub id: String,
    pub detail: String,
}

/// The difference between two reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub added_capabilities: Vec<String>,
    pub removed_capabilities: Vec<String>,
    /// `host (class)`
    pub added_hosts: Vec<String>,
    pub removed_hosts: Vec<String>,
    pub added_decoded: Vec<String>,
    pub removed_decoded: Vec<String>,
    pub added_findings: Vec<FindingKey>,
    pub removed_findings: Vec<FindingKey>,
    pub old_verdict: Option<Decision>,
    pub new_verdict: Option<Decision>,
}

impl Diff {
    /// Nothing appeared.
    pub fn nothing_added(&self) -> bool {
        self.added_capabilities.is_empty()
            && self.added_hosts.is_empty()
            && self.added_decoded.is_empty()
            && self.added_findings.is_empty()
    }
}

fn split<T: Ord + Clone>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> (Vec<T>, Vec<T>) {
    (
        new.difference(old).cloned().collect(),
        old.difference(new).cloned().collect(),
    )
}

/// Compare two reports.
pub fn diff(old: &Report, new: &Report) -> Diff {
    let caps = |r: &Report| {
        r.capabilities
            .iter()
            .map(|c| c.id.clone())
            .collect::<BTreeSet<_>>()
    };
    let hosts = |r: &Report| {
        r.hosts
            .iter()
            .map(|h| format!("{} ({})", h.host, h.class))
            .collect::<BTreeSet<_>>()
    };
    let dec = |r: &Report| {
        r.decoded
            .iter()
            .map(|d| d.text.clone())
            .collect::<BTreeSet<_>>()
    };
    let finds = |r: &Report| {
        r.findings
            .iter()
            .map(|f| FindingKey {
                severity: f.severity,
                id: f.id.clone(),
                detail: f.detail.clone(),
            })
            .collect::<BTreeSet<_>>()
    };
    let (added_capabilities, removed_capabilities) = split(&caps(old), &caps(new));
    let (added_hosts, removed_hosts) = split(&hosts(old), &hosts(new));
    let (added_decoded, removed_decoded) = split(&dec(old), &dec(new));
    let (mut added_findings, mut removed_findings) = split(&finds(old), &finds(new));
    added_findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    removed_findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    Diff {
        old: old.target.clone(),
        new: new.target.clone(),
        added_capabilities,
        removed_capabilities,
        added_hosts,
        removed_hosts,
        added_decoded,
        removed_decoded,
        added_findings,
        removed_findings,
        old_verdict: Some(old.verdict.decision),
        new_verdict: Some(new.verdict.decision),
    }
}
