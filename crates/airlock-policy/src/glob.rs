//! Tiny glob matching for model names and tool ids (`claude-*`, `gpt-?`, `*`).
//!
//! Model patterns are short and few; a full glob crate would be more than this needs.

/// Match `text` against `pattern` where `*` is any run of characters and `?` one character.
/// Matching is case-insensitive for ASCII, as model names are.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative wildcard match with backtracking to the last star: O(len(p) * len(t)) worst.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("claude-*", "claude-opus-5-5"));
        assert!(matches("*", ""));
        assert!(matches("gpt-?", "gpt-5"));
        assert!(!matches("gpt-?", "gpt-55"));
        assert!(matches("*opus*", "Claude-OPUS-5"));
        assert!(!matches("claude-*", "gpt-5"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }
}
