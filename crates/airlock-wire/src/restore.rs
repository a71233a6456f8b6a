//! Inbound restoration: placeholders the upstream echoes become the original values again.

use std::borrow::Cow;

use crate::json::{self, Edit, Val};
use crate::vault::{MAX_PLACEHOLDER_LEN, PLACEHOLDER_PREFIX, VaultScope};
use crate::{Api, WireError};

fn is_label_byte(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'
}

/// Decoded-coordinate replacements for every complete placeholder in `text` that `scope`
/// issued. With `json_inner`, `text` is JSON source (tool arguments) and values are escaped for
/// a JSON string. Placeholders the scope does not know are left alone.
pub(crate) fn placeholder_edits(text: &str, scope: &VaultScope, json_inner: bool) -> Vec<Edit> {
    let mut edits = Vec::new();
    let b = text.as_bytes();
    let finder = memchr::memmem::Finder::new(PLACEHOLDER_PREFIX.as_bytes());
    let mut from = 0;
    while let Some(off) = finder.find(&b[from..]) {
        let start = from + off;
        let mut i = start + PLACEHOLDER_PREFIX.len();
        while i < b.len() && i - start < MAX_PLACEHOLDER_LEN && is_label_byte(b[i]) {
            i += 1;
        }
        if b.get(i) == Some(&b']') {
            let end = i + 1;
            if let Some(v) = text.get(start..end).and_then(|ph| scope.lookup(ph)) {
                let value = if json_inner {
                    json::escape(v.expose())
                } else {
                    v.expose().to_owned()
                };
                edits.push(Edit {
                    start,
                    end,
                    text: value,
                });
                from = end;
                continue;
            }
        }
        from = start + 1;
    }
    edits
}

/// `text` with known placeholders restored.
pub(crate) fn restore_text<'t>(
    text: &'t str,
    scope: &VaultScope,
    json_inner: bool,
) -> Cow<'t, str> {
    if !text.contains(PLACEHOLDER_PREFIX) {
        return Cow::Borrowed(text);
    }
    let mut e = placeholder_edits(text, scope, json_inner);
    if e.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(json::apply_edits(text, &mut e))
    }
}

/// Where the suffix of `s` that could be the start of a placeholder begins (`[`, `[RED`,
/// `[REDACTED_GITH`...), if any. Only that suffix needs holding back in a stream.
pub(crate) fn holdback_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let lo = b.len().saturating_sub(MAX_PLACEHOLDER_LEN);
    let pos = lo + memchr::memrchr(b'[', &b[lo..])?;
    let cand = &b[pos..];
    let p = PLACEHOLDER_PREFIX.as_bytes();
    let partial = if cand.len() <= p.len() {
        p.starts_with(cand)
    } else {
        cand.starts_with(p) && cand[p.len()..].iter().all(|&c| is_label_byte(c))
    };
    partial.then_some(pos)
}

/// Restore placeholders in every string of a JSON value, except inside signed or encrypted
/// objects, thinking blocks and reasoning items. Strings under `arguments` / `partial_json` hold
/// JSON and get JSON-escaped values.
pub(crate) fn restore_val(
    src: &str,
    v: &Val,
    scope: &VaultScope,
    json_inner: bool,
    out: &mut Vec<Edit>,
) {
    match v {
        Val::Str(s) => {
            if !src
                .get(s.start..s.end)
                .is_some_and(|r| r.contains(PLACEHOLDER_PREFIX))
            {
                return;
            }
            let dec = s.decode(src);
            dec.map_edits(placeholder_edits(&dec.text, scope, json_inner), out);
        }
        Val::Arr(items) => {
            for it in items {
                restore_val(src, it, scope, json_inner, out);
            }
        }
        Val::Obj(members) => {
            // Signed or encrypted objects, and Gemini thought parts: what the agent sends back
            // must be what the provider sent.
            if v.has(src, "signature")
                || v.has(src, "encrypted_content")
                || matches!(v.get(src, "thought"), Some(Val::Bool(true)))
            {
                return;
            }
            if let Some(t) = v.get_str(src, "type")
                && matches!(&*t, "thinking" | "redacted_thinking" | "reasoning")
            {
                return;
            }
            for (k, val) in members {
                let inner =
                    json_inner || k.eq_str(src, "arguments") || k.eq_str(src, "partial_json");
                restore_val(src, val, scope, inner, out);
            }
        }
        _ => {}
    }
}

/// Restore placeholders in a complete (non-streaming) JSON response of `api`. `Ok(None)` when
/// nothing changed: forward the original bytes.
pub fn restore_json(
    _api: Api,
    body: &[u8],
    scope: &VaultScope,
) -> Result<Option<Vec<u8>>, WireError> {
    if scope.is_empty() || memchr::memmem::find(body, PLACEHOLDER_PREFIX.as_bytes()).is_none() {
        return Ok(None);
    }
    let (src, root) = json::parse_body(body)?;
    let mut edits = Vec::new();
    restore_val(src, &root, scope, false, &mut edits);
    if edits.is_empty() {
        return Ok(None);
    }
    Ok(Some(json::apply_edits(src, &mut edits).into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdback_only_placeholder_prefixes() {
        assert_eq!(holdback_start("abc ["), Some(4));
        assert_eq!(holdback_start("abc [RED"), Some(4));
        assert_eq!(holdback_start("abc [REDACTED_GIT"), Some(4));
        assert_eq!(holdback_start("abc [REDACTED_GIT_1"), Some(4));
        assert_eq!(holdback_start("abc [REDX"), None);
        assert_eq!(holdback_start("abc [REDACTED_A_1] x"), None);
        assert_eq!(holdback_start("abc [REDACTED_a"), None);
        assert_eq!(holdback_start("abc"), None);
        assert_eq!(holdback_start("[x [R"), Some(3));
    }

    #[test]
    fn restores_known_only() {
        let s = VaultScope::detached();
        let ph = s.placeholder("TOKEN", "se\"cret");
        let t = format!("a {ph} b [REDACTED_TOKEN_9] c {ph}");
        assert_eq!(
            restore_text(&t, &s, false),
            "a se\"cret b [REDACTED_TOKEN_9] c se\"cret"
        );
        assert_eq!(
            restore_text(&t, &s, true),
            "a se\\\"cret b [REDACTED_TOKEN_9] c se\\\"cret"
        );
    }
}
