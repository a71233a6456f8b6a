//! Cost of an exchange from its token usage and a price table (`rules/pricing.toml`, embedded;
//! a company may load its own with [`PriceTable::load`]).
//!
//! Prices are US dollars per million tokens, so one token costs exactly `price` millionths of a
//! dollar: the cost is computed in micro-dollars and stored as an integer (no float in a hashed
//! record).

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::AuditError;
use crate::record::Usage;

/// The built-in table's text (public list prices; see the file's header).
pub const BUILTIN_PRICING: &str = include_str!("../../../rules/pricing.toml");

/// Largest pricing file read.
pub const MAX_PRICING_FILE_BYTES: u64 = 1 << 20;

/// One model pattern's prices, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Model-name glob: `*` matches any characters; case-insensitive.
    pub model: String,
    pub input: f64,
    pub output: f64,
    /// Prompt tokens served from the cache (default: the input price).
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the cache (default: the input price).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// The provider's input count already contains the cache reads (OpenAI).
    #[serde(default)]
    pub input_includes_cache_read: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    price: Vec<Price>,
}

/// Prices, tried in order (first matching glob wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    pub prices: Vec<Price>,
}

impl PriceTable {
    /// The embedded `rules/pricing.toml`.
    pub fn builtin() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            // Checked by a unit test; an unparsable built-in table means no costs, not a panic.
            PriceTable::parse(BUILTIN_PRICING, "rules/pricing.toml").unwrap_or_default()
        })
    }

    /// Parse a pricing table; `origin` names it in errors. Every problem is reported by entry.
    pub fn parse(text: &str, origin: &str) -> Result<PriceTable, AuditError> {
        let file: File = toml::from_str(text).map_err(|e| AuditError::Pricing {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let mut problems = Vec::new();
        for (i, p) in file.price.iter().enumerate() {
            if p.model.trim().is_empty() {
                problems.push(format!("price[{i}]: model is empty"));
            }
            let fields = [
                ("input", Some(p.input)),
                ("output", Some(p.output)),
                ("cache_read", p.cache_read),
                ("cache_write", p.cache_write),
            ];
            for (name, v) in fields {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    problems.push(format!(
                        "price[{i}] ({}): {name} must be a non-negative number",
                        p.model
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(AuditError::Pricing {
                origin: origin.to_string(),
                reason: problems.join("; "),
            });
        }
        Ok(PriceTable { prices: file.price })
    }

    /// Read and parse a pricing file (bounded size).
    pub fn load(path: &Path) -> Result<PriceTable, AuditError> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| AuditError::io(path, e))?;
        let mut text = String::new();
        f.take(MAX_PRICING_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| AuditError::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The prices for `model` (first matching entry).
    pub fn find(&self, model: &str) -> Option<&Price> {
        self.prices
            .iter()
            .find(|p| airlock_policy::glob::matches(&p.model, model))
    }

    /// Cost of `usage` for `model` in micro-dollars; `None` when the model has no price or
    /// the usage has no token counts.
    pub fn cost_micro_usd(&self, model: &str, usage: &Usage) -> Option<u64> {
        let p = self.find(model)?;
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return None;
        }
        let tokens = |v: Option<u64>| v.unwrap_or(0) as f64;
        let cache_read = tokens(usage.cache_read_tokens);
        let cache_write = tokens(usage.cache_write_tokens);
        let mut input = tokens(usage.input_tokens);
        if p.input_includes_cache_read {
            input = (input - cache_read).max(0.0);
        }
        let cost = input * p.input
            + tokens(usage.output_tokens) * p.output
            + cache_read * p.cache_read.unwrap_or(p.input)
            + cache_write * p.cache_write.unwrap_or(p.input);
        // Saturating float-to-int conversion; prices were checked finite and non-negative.
        Some(cost.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_orders_specific_first() {
        let t = PriceTable::parse(BUILTIN_PRICING, "rules/pricing.toml").unwrap();
        assert!(t.prices.len() >= 10);
        assert_eq!(
            t.find("gpt-5-mini-2025-08-07").unwrap().model,
            "gpt-5-mini*"
        );
        assert_eq!(t.find("gpt-5").unwrap().model, "gpt-5*");
        assert_eq!(
            t.find("claude-opus-4-5-20251101").unwrap().model,
            "claude-opus-4-5*"
        );
        assert_eq!(t.find("claude-opus-4-1").unwrap().model, "claude-opus-4*");
        assert_eq!(
            t.find("CLAUDE-SONNET-4-5").unwrap().model,
            "claude-sonnet-4*"
        );
        assert!(t.find("llama-3").is_none());
        assert_eq!(PriceTable::builtin(), &t);
    }

    #[test]
    fn anthropic_and_openai_costs() {
        let t = PriceTable::builtin();
        // Sonnet: 1000 in × 3 + 200 out × 15 + 5000 cache read × 0.3 + 100 write × 3.75.
        let u = Usage {
            input_tokens: Some(1000),
            output_tokens: Some(200),
            cache_read_tokens: Some(5000),
            cache_write_tokens: Some(100),
            ..Usage::default()
        };
        assert_eq!(
            t.cost_micro_usd("claude-sonnet-4-5", &u),
            Some(3000 + 3000 + 1500 + 375)
        );
        // gpt-5: 1000 prompt of which 400 cached: 600 × 1.25 + 400 × 0.125 + 100 × 10.
        let o = Usage {
            input_tokens: Some(1000),
            output_tokens: Some(100),
            cache_read_tokens: Some(400),
            ..Usage::default()
        };
        assert_eq!(t.cost_micro_usd("gpt-5", &o), Some(750 + 50 + 1000));
        assert_eq!(t.cost_micro_usd("unknown-model", &o), None);
        assert_eq!(t.cost_micro_usd("gpt-5", &Usage::default()), None);
    }

    #[test]
    fn bad_tables_are_refused_with_the_entry_named() {
        let e = PriceTable::parse(
            "[[price]]\nmodel = \"x*\"\ninput = -1.0\noutput = 2.0\n",
            "mine.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mine.toml") && e.contains("price[0]") && e.contains("input"),
            "{e}"
        );
        assert!(PriceTable::parse("[[price]]\nmodel = \"x\"\n", "f").is_err());
        assert!(
            PriceTable::parse(
                "[[price]]\nmodel=\"x\"\ninput=1.0\noutput=1.0\nfoo=1\n",
                "f"
            )
            .is_err()
        );
    }
}
