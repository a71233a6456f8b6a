//! Which records a query or an export wants. Shared by the CLI and the admin HTTP endpoint
//! ([`AuditFilter::from_query_pairs`]).

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AuditError;
use crate::record::Decision;

/// Most records one query returns when no limit is given.
pub const DEFAULT_QUERY_LIMIT: usize = 1000;
/// Hard ceiling on a query's limit (a query holds its results in memory; use export to stream).
pub const MAX_QUERY_LIMIT: usize = 100_000;

/// A query. Every set field must match (AND); text fields match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Records strictly before this time.
    pub until: Option<OffsetDateTime>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<Decision>,
    pub model: Option<String>,
    /// Only records with a sequence number above this (for paging).
    pub after_seq: Option<u64>,
    /// `query` keeps the newest `limit` matches (returned oldest first); export ignores
    /// it unless set.
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Parse URL query pairs (`since=1h&user=alice&tool=claude-code&decision=denied&limit=50`).
    /// `since` / `until` take an RFC 3339 time or an age such as `90s`, `30m`, `1h`, `7d`
    /// (relative to `now`). Unknown keys, repeated keys and bad values are errors naming the key.
    pub fn from_query_pairs<'a, I>(pairs: I, now: OffsetDateTime) -> Result<AuditFilter, AuditError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut f = AuditFilter::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            if seen.contains(&k) {
                return Err(filter_err(k, "given more than once"));
            }
            seen.push(k);
            match k {
                "since" => f.since = Some(parse_time(k, v, now)?),
                "until" => f.until = Some(parse_time(k, v, now)?),
                "user" => f.user = Some(nonempty(k, v)?),
                "team" => f.team = Some(nonempty(k, v)?),
                "tool" => f.tool = Some(nonempty(k, v)?),
                "model" => f.model = Some(nonempty(k, v)?),
                "decision" => {
                    f.decision = Some(
                        Decision::parse(v)
                            .ok_or_else(|| filter_err(k, "expected allowed, denied or blocked"))?,
                    )
                }
                "after_seq" => {
                    f.after_seq = Some(v.parse().map_err(|_| filter_err(k, "expected a number"))?)
                }
                "limit" => f.limit = Some(parse_limit(v)?),
                other => {
                    return Err(filter_err(
                        other,
                        "unknown filter (expected since, until, user, team, tool, decision, model, after_seq, limit)",
                    ));
                }
            }
        }
        Ok(f)
    }

    /// The limit a `query` applies.
    pub fn effective_limit(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_QUERY_LIMIT)
            .min(MAX_QUERY_LIMIT)
    }
}

/// Parse a limit (1..=MAX_QUERY_LIMIT).
pub fn parse_limit(v: &str) -> Result<usize, AuditError> {
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_QUERY_LIMIT).contains(&n) => Ok(n),
        _ => Err(filter_err(
            "limit",
            &format!("expected a number from 1 to {MAX_QUERY_LIMIT}"),
        )),
    }
}

fn nonempty(k: &str, v: &str) -> Result<String, AuditError> {
    if v.is_empty() {
        Err(filter_err(k, "empty value"))
    } else {
        Ok(v.to_string())
    }
}

fn filter_err(key: &str, reason: &str) -> AuditError {
    AuditError::Filter {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `since`/`until`: RFC 3339, or an age relative to `now`.
pub fn parse_time(key: &str, v: &str, now: OffsetDateTime) -> Result<OffsetDateTime, AuditError> {
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(t);
    }
    let age = parse_age(v).map_err(|reason| filter_err(key, &reason))?;
    let age = time::Duration::try_from(age).map_err(|_| filter_err(key, "age too large"))?;
    now.checked_sub(age)
        .ok_or_else(|| filter_err(key, "age too large"))
}

/// Parse an age: a whole number followed by `s`, `m`, `h`, `d` or `w` (`30d`, `1h`).
pub fn parse_age(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{v:?}: expected a number and a unit (s, m, h, d, w), e.g. 1h or 30d, or an RFC 3339 time"))?;
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?}: expected a number before the unit"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{v:?}: unknown unit {unit:?} (expected s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{v:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let f = AuditFilter::from_query_pairs(
            [
                ("since", "1h"),
                ("user", "alice"),
                ("tool", "claude-code"),
                ("decision", "denied"),
                ("limit", "5"),
            ],
            now,
        )
        .unwrap();
        assert_eq!(f.since, Some(now - time::Duration::hours(1)));
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.decision, Some(Decision::Denied));
        assert_eq!(f.limit, Some(5));
        let f = AuditFilter::from_query_pairs([("until", "2026-01-02T03:04:05Z")], now).unwrap();
        assert_eq!(f.until.map(|t| t.unix_timestamp()), Some(1_767_323_045));
    }

    #[test]
    fn rejects_bad_pairs_naming_the_key() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(365);
        for (pairs, key) in [
            (vec![("sinse", "1h")], "sinse"),
            (vec![("since", "1y")], "since"),
            (vec![("decision", "maybe")], "decision"),
            (vec![("limit", "0")], "limit"),
            (vec![("user", "a"), ("user", "b")], "user"),
            (vec![("since", "99999999999999999w")], "since"),
        ] {
            let e = AuditFilter::from_query_pairs(pairs, now)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("filter {key}:")), "{e}");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_age("h").is_err());
        assert!(parse_age("10").is_err());
    }
}
