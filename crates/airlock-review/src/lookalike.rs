//! Look-alike characters: two strings that read the same but differ in code points
//! (curly vs straight apostrophe, Cyrillic vs Latin letters, no-break vs normal space,
//! zero-width characters...).

/// The character a look-alike stands for, `None` for invisible characters (dropped).
pub fn canonical(c: char) -> Option<char> {
    let u = c as u32;
    Some(match u {
        0x2018 | 0x2019 | 0x201B | 0x2032 | 0x02BC | 0x02B9 | 0x02BB | 0x02BD | 0x0060 | 0x00B4
        | 0xFF07 | 0x02C8 => '\'',
        0x201C | 0x201D | 0x201F | 0x2033 | 0xFF02 | 0x02BA => '"',
        0x2010..=0x2015 | 0x2212 | 0xFE63 | 0xFF0D => '-',
        0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => ' ',
        0x2024 | 0xFF0E => '.',
        0x201A | 0xFF0C => ',',
        0x200B..=0x200D
        | 0x2060
        | 0xFEFF
        | 0x180E
        | 0x034F
        | 0x00AD
        | 0xFE00..=0xFE0F
        | 0xE0000..=0xE007F => return None,
        0xFF01..=0xFF5E => char::from_u32(u - 0xFF01 + 0x21)?,
        _ => match c {
            'а' => 'a',
            'е' => 'e',
            'о' => 'o',
            'р' => 'p',
            'с' => 'c',
            'у' => 'y',
            'х' => 'x',
            'і' => 'i',
            'ј' => 'j',
            'ѕ' => 's',
            'ԁ' => 'd',
            'һ' => 'h',
            'А' => 'A',
            'В' => 'B',
            'Е' => 'E',
            'К' => 'K',
            'М' => 'M',
            'Н' => 'H',
            'О' => 'O',
            'Р' => 'P',
            'С' => 'C',
            'Т' => 'T',
            'Х' => 'X',
            'ο' => 'o',
            'ν' => 'v',
            'Α' => 'A',
            'Β' => 'B',
            'Ε' => 'E',
            'Ζ' => 'Z',
            'Η' => 'H',
            'Ι' => 'I',
            'Κ' => 'K',
            'Μ' => 'M',
            'Ν' => 'N',
            'Ο' => 'O',
            'Ρ' => 'P',
            'Τ' => 'T',
            'Χ' => 'X',
            _ => c,
        },
    })
}

/// When `a` and `b` differ but read the same, the differing character pairs (a char of
/// U+0000 stands for an invisible character present on one side only).
pub fn differences(a: &str, b: &str) -> Option<Vec<(char, char)>> {
    if a == b || a.len() > 4096 || b.len() > 4096 {
        return None;
    }
    let ka: Vec<(char, char)> = a
        .chars()
        .filter_map(|c| canonical(c).map(|k| (c, k)))
        .collect();
    let kb: Vec<(char, char)> = b
        .chars()
        .filter_map(|c| canonical(c).map(|k| (c, k)))
        .collect();
    if ka.len() != kb.len() || ka.iter().zip(&kb).any(|(x, y)| x.1 != y.1) {
        return None;
    }
    let mut diffs: Vec<(char, char)> = ka
        .iter()
        .zip(&kb)
        .filter(|(x, y)| x.0 != y.0)
        .map(|(x, y)| (x.0, y.0))
        .collect();
    if diffs.is_empty() {
        // Only invisible characters differ.
        let inv = |s: &str| s.chars().find(|c| canonical(*c).is_none()).unwrap_or('\0');
        diffs.push((inv(a), inv(b)));
    }
    Some(diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apostrophes_and_homoglyphs() {
        assert_eq!(
            differences("don't", "don\u{2019}t"),
            Some(vec![('\'', '\u{2019}')])
        );
        assert_eq!(differences("'", "\u{02BC}"), Some(vec![('\'', '\u{02BC}')]));
        assert!(differences("paypal", "раypal").is_some());
        assert!(differences("ab", "a\u{200B}b").is_some());
        assert_eq!(differences("yes", "no"), None);
        assert_eq!(differences("a", "a"), None);
        assert_eq!(differences("'", "\""), None);
    }
}
