//! Offline validators (checksums, structure) and the value filters shared by all rules.
//!
//! Nothing here contacts a provider: a checksum only says a value is well-formed.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::Confidence;
use crate::rules::Validator;

/// What a validator says about a candidate value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a finding.
    Reject,
    /// A finding; optionally with a different confidence and a detail line.
    Accept {
        confidence: Option<Confidence>,
        detail: Option<String>,
    },
}

impl Verdict {
    fn ok() -> Self {
        Verdict::Accept {
            confidence: None,
            detail: None,
        }
    }
    fn from_bool(b: bool) -> Self {
        if b { Verdict::ok() } else { Verdict::Reject }
    }
}

/// Run `v` on the value `bytes[start..end]`, with the text around it where the validator looks
/// there (`ipv4` and `luhn`: not inside a longer dotted run, see [`inside_dotted_number`];
/// `phone`: not an item of a list of hex groups; `generic_secret`: not code).
pub fn run_in(v: Validator, bytes: &[u8], start: usize, end: usize) -> Verdict {
    if matches!(v, Validator::Ipv4 | Validator::Luhn) && inside_dotted_number(bytes, start, end) {
        return Verdict::Reject;
    }
    if v == Validator::Phone && inside_hex_list(bytes, start, end) {
        return Verdict::Reject;
    }
    if v == Validator::GenericSecret && code_not_value(bytes, start, end) {
        return Verdict::Reject;
    }
    run(v, &bytes[start..end])
}

/// Run `v` on `value` (the bytes of the matched value).
pub fn run(v: Validator, value: &[u8]) -> Verdict {
    let Ok(s) = std::str::from_utf8(value) else {
        return Verdict::Reject;
    };
    match v {
        Validator::Crc32Base62 => {
            if crc32_base62_ok(s) {
                Verdict::Accept {
                    confidence: Some(Confidence::High),
                    detail: Some("checksum valid".into()),
                }
            } else {
                Verdict::Accept {
                    confidence: Some(Confidence::Low),
                    detail: Some("checksum does not match".into()),
                }
            }
        }
        Validator::Luhn => Verdict::from_bool(card_ok(s)),
        Validator::Iban => Verdict::from_bool(iban_ok(s)),
        Validator::ChinaId => Verdict::from_bool(china_id_ok(s)),
        Validator::UsSsn => Verdict::from_bool(ssn_ok(s)),
        Validator::Ipv4 => ipv4(s),
        Validator::Email => Verdict::from_bool(email_ok(s)),
        Validator::Phone => Verdict::from_bool(phone_ok(s)),
        Validator::Jwt => Verdict::from_bool(jwt_ok(s)),
        Validator::BasicAuthB64 => Verdict::from_bool(basic_auth_ok(s)),
        Validator::GenericSecret => Verdict::from_bool(generic_secret_ok(s)),
    }
}

const BASE62_A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE62_B: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn base62_6(mut n: u32, alphabet: &[u8]) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = alphabet[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// GitHub (`ghp_`...) and npm (`npm_`) tokens end in 6 base62 characters holding the CRC32 of
/// the 30 random characters before them. Accepts either base62 digit order and either checksum
/// input (random part alone, or prefix + random part), as implementations differ in public
/// descriptions; a false accept stays below 2^-29.
pub fn crc32_base62_ok(token: &str) -> bool {
    let b = token.as_bytes();
    let Some(us) = b.iter().position(|&c| c == b'_') else {
        return false;
    };
    let rest = &b[us + 1..];
    if rest.len() != 36 || !rest.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (random, check) = rest.split_at(30);
    let full = &b[..us + 1 + 30];
    for input in [random, full] {
        let crc = crc32fast::hash(input);
        for alphabet in [BASE62_A, BASE62_B] {
            if base62_6(crc, alphabet) == check {
                return true;
            }
        }
    }
    false
}

/// Encode the checksum the way [`crc32_base62_ok`] accepts (digits then upper then lower case,
/// over the random part). For tests and fixtures.
pub fn crc32_base62_suffix(random: &str) -> String {
    String::from_utf8_lossy(&base62_6(crc32fast::hash(random.as_bytes()), BASE62_A)).into_owned()
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Luhn check over the digits of `s`.
pub fn luhn_ok(s: &str) -> bool {
    let d = digits(s);
    if d.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn card_ok(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || !luhn_ok(s) {
        return false;
    }
    // All the same digit (0000 0000 0000 0000 passes Luhn) is not a card.
    if d.iter().all(|&x| x == d[0]) {
        return false;
    }
    // Known issuer prefixes (IIN ranges): Visa, Mastercard, Amex, Discover, JCB, Diners,
    // UnionPay, Maestro.
    let p2 = u32::from(d[0]) * 10 + u32::from(d[1]);
    let p4 = d[..4].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    match d[0] {
        4 => true,
        5 => (51..=55).contains(&p2) || (50..=59).contains(&p2) && d.len() >= 16,
        2 => (2221..=2720).contains(&p4),
        3 => p2 == 34 || p2 == 37 || p2 == 35 || p2 == 36 || p2 == 38 || p2 == 30 || p2 == 39,
        6 => true,
        _ => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// IBAN: known country, right length, mod 97 == 1.
pub fn iban_ok(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if compact.len() < 15 || compact.len() > 34 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let Ok(cc) = std::str::from_utf8(&compact[..2]) else {
        return false;
    };
    match IBAN_LENGTHS.iter().find(|(c, _)| *c == cc) {
        Some((_, len)) if *len == compact.len() => {}
        _ => return false,
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// China resident identity number: 18 characters, valid birth date, ISO 7064 MOD 11-2.
pub fn china_id_ok(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let last = b[17].to_ascii_uppercase();
    if !(last.is_ascii_digit() || last == b'X') {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x - b'0'));
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    // Province code: first two digits 11..=82.
    if !(11..=82).contains(&num(0..2)) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    check == last
}

/// US SSN ranges: area not 000, 666 or 9xx; group not 00; serial not 0000; not the
/// well-known advertising number 078-05-1120 or the 123-45-6789 example.
pub fn ssn_ok(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let n = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (area, group, serial) = (n(0..3), n(3..5), n(5..9));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    let all = n(0..9);
    !(all == 78_051_120 || all == 123_456_789 || all == 219_099_999)
}

/// Whether `bytes[start..end]` (four dotted numbers) is part of a longer run of dotted numbers:
/// a digit and a dot before it, or a dot and a digit after it. An object identifier
/// (`1.3.6.1.4.1.311.2.1.14`) or a long version (`1.2.3.4.5`) is not an IPv4 address: the
/// `const-oid` crate's table alone held 1,425 such findings. A dot after the address followed by
/// anything else (the end of a sentence, `10.0.0.1.nip.io`) still counts. The same for card
/// numbers, whose groups are never joined by dots: digits after a decimal point
/// (`0.3653625547885895`, model weights and colour tables) or before one (`464269060800000.0`)
/// are part of a number, not a card (369 of the 775 card findings over the tenth session's
/// registry).
fn inside_dotted_number(bytes: &[u8], start: usize, end: usize) -> bool {
    let before = start >= 2 && bytes[start - 1] == b'.' && bytes[start - 2].is_ascii_digit();
    let after = bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
    before || after
}

/// A number that is one item of a list of hex groups (`0045 0304 0300 0304;1E14 0304;`:
/// Unicode's code point lists) is not a phone number. The neighbours are the tokens on either
/// side past one or two separators (space, tab, `;`, `,`); it is a list when a neighbour is a
/// group of 4 to 6 hex digits with a letter in it, or of the same width as every group of the
/// number, or when both neighbours are such groups. `icu_normalizer`'s `NormalizationTest.txt`
/// alone held 3,621 `phone-national` findings. A phone number after `Tel` or in a list of phone
/// numbers (`0161 496 0000, 0113 496 0000`) still counts.
fn inside_hex_list(bytes: &[u8], start: usize, end: usize) -> bool {
    let sep = |c: &&u8| matches!(c, b' ' | b'\t' | b';' | b',');
    let word = |c: &&u8| c.is_ascii_alphanumeric();
    // The token past the separators on each side; none when the number touches its neighbour
    // (then both are one token, not items of a list).
    let skip = bytes[..start].iter().rev().take(2).take_while(sep).count();
    let to = start - skip;
    let len = bytes[..to].iter().rev().take(7).take_while(word).count();
    let before = if skip > 0 { &bytes[to - len..to] } else { &[] };
    let skip = bytes[end..].iter().take(2).take_while(sep).count();
    let from = end + skip;
    let len = bytes[from..].iter().take(7).take_while(word).count();
    let after = if skip > 0 {
        &bytes[from..from + len]
    } else {
        &[]
    };
    let group = |t: &[u8]| (4..=6).contains(&t.len()) && t.iter().all(u8::is_ascii_hexdigit);
    let lettered = |t: &[u8]| group(t) && t.iter().any(u8::is_ascii_alphabetic);
    let widths: Vec<usize> = bytes[start..end]
        .split(|c| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(<[u8]>::len)
        .collect();
    let same_width =
        |t: &[u8]| group(t) && widths.len() > 1 && widths.iter().all(|&w| w == t.len());
    lettered(before)
        || lettered(after)
        || same_width(before)
        || same_width(after)
        || (group(before) && group(after))
}

fn ipv4(s: &str) -> Verdict {
    let mut oct = [0u32; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0'))
        {
            return Verdict::Reject;
        }
        let Ok(v) = part.parse::<u32>() else {
            return Verdict::Reject;
        };
        if v > 255 {
            return Verdict::Reject;
        }
        oct[n] = v;
        n += 1;
    }
    if n != 4 {
        return Verdict::Reject;
    }
    let [a, b, c, _] = oct;
    // Not personal data: unspecified, broadcast, loopback, documentation ranges, link-local.
    if a == 0 || a == 255 || a == 127 || a >= 224 {
        return Verdict::Reject;
    }
    if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        return Verdict::Reject;
    }
    let private = a == 10
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..=127).contains(&b))
        || (a == 169 && b == 254);
    if private {
        Verdict::Accept {
            confidence: Some(Confidence::Low),
            detail: Some("private address".into()),
        }
    } else {
        Verdict::Accept {
            confidence: None,
            detail: Some("public address".into()),
        }
    }
}

fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    let local_l = local.to_ascii_lowercase();
    let Some((_, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    // File names like icon@2x.png and package specs like pkg@1.2.3 are not addresses.
    const NOT_TLDS: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "js", "ts", "css", "json", "md", "rs", "py",
        "html", "map", "mjs", "cjs", "tsx", "jsx", "lock", "toml", "yaml", "yml", "txt", "zip",
        "gz", "tgz",
    ];
    if NOT_TLDS.contains(&tld) {
        return false;
    }
    // Documentation domains (RFC 2606 / 6761) and obvious placeholders.
    let doc = [
        "example.com",
        "example.org",
        "example.net",
        "example.edu",
        "test.com",
        "domain.com",
        "email.com",
        "localhost",
        "invalid",
        "test",
        "example",
    ];
    if doc
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
    {
        return false;
    }
    !matches!(
        local_l.as_str(),
        "git"
            | "user"
            | "username"
            | "your.name"
            | "name"
            | "you"
            | "someone"
            | "email"
            | "foo"
            | "me"
    )
}

fn phone_ok(s: &str) -> bool {
    let d = digits(s);
    if !(8..=15).contains(&d.len()) {
        return false;
    }
    if d.iter().all(|&x| x == d[0]) {
        return false;
    }
    // Sequential runs like 1234567890 are placeholders.
    let seq = d.windows(2).all(|w| w[1] == (w[0] + 1) % 10);
    !seq
}

fn b64url_json(part: &str) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn jwt_ok(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = b64url_json(h) else {
        return false;
    };
    header.get("alg").is_some() && b64url_json(p).is_some_and(|v| v.is_object())
}

fn basic_auth_ok(s: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    match text.split_once(':') {
        Some((user, pass)) => {
            !user.is_empty()
                && pass.len() >= 3
                && !text.chars().any(char::is_control)
                && !is_placeholder(pass.as_bytes())
        }
        None => false,
    }
}

/// `MLKEM512_SECRET_KEY_BYTES`, `SHA256_DIGEST_LENGTH`: a constant's name (upper case and
/// digits in at least two parts joined by `_`), which code assigns to a `secret_len` or a
/// `token_type`. A key, token or password in that shape would be a word list in capitals.
fn screaming_snake(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_uppercase)
        && b.contains(&b'_')
        && !b.ends_with(b"_")
        && !s.contains("__")
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// An identifier, or a path of them joined by `.`, `::` or `->`: what code names, never a
/// literal.
fn ident_path(s: &[u8]) -> bool {
    let parts = std::str::from_utf8(s).map_or(Vec::new(), |s| {
        s.split(['.', ':']).flat_map(|p| p.split("->")).collect()
    });
    !parts.is_empty()
        && parts.iter().enumerate().all(|(i, p)| {
            // `a::b` splits into an empty part between the colons; nothing else may be empty.
            (p.is_empty() && i > 0 && i + 1 < parts.len())
                // A tuple field after the first part: `self.0.to_token_stream`.
                || (i > 0 && !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
                || p.bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                    && p.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        })
}

/// A value the generic rules matched that the text around it shows to be code, not a literal:
/// only for a value written without quotes (a quoted one is a literal whatever it looks like).
/// - a call or a generic type: `token1.child_token(`, `Curve25519SeedBin<'_>`;
/// - a closure's parameters, or a field in snake case: `|tokens: …|`, `node.colon2_token`;
/// - a macro or an index: `assert_fips_status_indicator!(`, `vec![0u8`, `Token![struct]`,
///   `write_levels_[level].secret`;
/// - a type annotation: `private_key: Pkcs8V1Der = …`;
/// - arithmetic on names: `params.shared_secret_len/2`, `client_pk^server_sk`.
///
/// A `.env` line (`API_KEY=PT7HjSd5J1AHMe4TSkjrbo6M`) has none of these.
fn code_not_value(bytes: &[u8], start: usize, end: usize) -> bool {
    let value = &bytes[start..end];
    if start > 0 && matches!(bytes[start - 1], b'"' | b'\'' | b'`') {
        return false;
    }
    let ident = ident_path(value);
    if ident && matches!(bytes.get(end), Some(b'(' | b'<')) {
        return true;
    }
    // A closure's parameters: `= |tokens: &mut TokenStream|`, `|token: CancellationToken|`.
    if value.starts_with(b"|") || value.strip_suffix(b"|").is_some_and(ident_path) {
        return true;
    }
    // A field of a value in snake case: `node.colon2_token`, `params.shared_secret_len`.
    if value.contains(&b'.')
        && value.split(|&c| c == b'.').all(|p| {
            p.first()
                .is_some_and(|c| c.is_ascii_lowercase() || *c == b'_')
                && p.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
                && p.iter().filter(|c| c.is_ascii_digit()).count() <= 2
        })
    {
        return true;
    }
    if let Some(i) = value.iter().position(|&c| c == b'!' || c == b'[') {
        let after = value.get(i + 1).copied();
        let (head, bang) = (&value[..i], value[i] == b'!');
        if ident_path(head) && (!bang || after.is_none() || after == Some(b'[')) {
            return true;
        }
    }
    if ident {
        // Bounded: a hostile text may put megabytes of blanks beside a value.
        let before = bytes[..start]
            .iter()
            .rev()
            .take(64)
            .find(|c| !matches!(c, b' ' | b'\t'))
            .copied();
        let mut after = bytes[end..]
            .iter()
            .take(64)
            .skip_while(|c| matches!(c, b' ' | b'\t'));
        if before == Some(b':') && after.next() == Some(&b'=') && after.next() != Some(&b'=') {
            return true;
        }
    }
    let operands: Vec<&[u8]> = value
        .split(|c| matches!(c, b'+' | b'*' | b'/' | b'^' | b'|' | b'&' | b'%'))
        .collect();
    operands.len() >= 2
        && operands
            .iter()
            .all(|o| o.iter().all(u8::is_ascii_digit) && !o.is_empty() || ident_path(o))
        && operands
            .iter()
            .any(|o| ident_path(o) && o.iter().any(|&c| c == b'_' || c == b'.'))
}

/// `x25519_generate_private_key`: a name in snake case, at least two of its parts words of three
/// or more letters. (Random keys in lower case, hex or base36, have no `_`; base64url ones mix
/// cases.)
fn snake_words(s: &str) -> bool {
    s.contains('_')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && s.split('_')
            .filter(|p| p.len() >= 3 && p.bytes().all(|c| c.is_ascii_lowercase()))
            .count()
            >= 2
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A value assigned to a secret-looking name is a finding unless it is a UUID, an identifier,
/// a member access or call, a path, or a template/reference.
pub fn generic_secret_ok(s: &str) -> bool {
    if s.len() < 8 || is_uuid(s) {
        return false;
    }
    // What follows `==` (a comparison), `::` (a path: `Secrets::Aes128Gcm`) or a negation
    // (`!!extended_master_secret`).
    if s.starts_with(['=', ':', '!']) {
        return false;
    }
    if screaming_snake(s) || snake_words(s) {
        return false;
    }
    // Identifiers and dotted/namespaced references: foo_bar, self.token, crate::Token.
    if s.bytes()
        .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-' || b == b'.' || b == b':')
    {
        return false;
    }
    if s.contains("::")
        || s.contains("()")
        || s.contains("->")
        || s.starts_with('/')
        || s.starts_with("./")
    {
        return false;
    }
    if s.starts_with('$') || s.starts_with('%') || s.starts_with('&') || s.starts_with('*') {
        return false;
    }
    // Snake/kebab case words with a digit: get_token2, api-v1-key.
    let lower = s.to_ascii_lowercase();
    if lower
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && (lower.contains('_') || lower.contains('-'))
        && lower.bytes().filter(u8::is_ascii_digit).count() <= 2
    {
        return false;
    }
    // A word followed by a version number: v1.2.3, token2.
    if lower.bytes().filter(u8::is_ascii_digit).count() <= 1
        && lower.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    true
}

/// Shannon entropy in bits per byte.
pub fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[b as usize] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

const PLACEHOLDER_PARTS: &[&str] = &[
    "example",
    "xxxx",
    "****",
    "<",
    ">",
    "${",
    "{{",
    "}}",
    "%(",
    "process.env",
    "os.environ",
    "getenv",
    "env[",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "dummy",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yourapi",
    "yoursecret",
    "yourpassword",
    "insert",
    "replace_me",
    "replaceme",
    "sample",
    "fake",
    "123456789",
    "abcdefgh",
    "...",
    "\u{2026}",
    "#{",
    "[secret",
    "[token",
    "[password",
    "secret_here",
    "token_here",
    "key_here",
    "_here",
];
const PLACEHOLDER_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "pass",
    "none",
    "null",
    "true",
    "false",
    "undefined",
    "todo",
    "tbd",
    "test",
    "testing",
    "admin",
    "root",
    "string",
    "value",
    "apikey",
    "api_key",
    "secretkey",
    "mypassword",
    "password123",
    "letmein",
    "hunter2",
    "qwerty",
    "default",
];

/// Values published in vendor documentation or emulators (not secrets).
const KNOWN_PUBLIC: &[&str] = &[
    // Azurite / Azure Storage Emulator account key.
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
];

/// A shell/CI variable reference such as `$PASS`, `$(cmd)` or `%PASSWORD%`.
fn is_variable_reference(v: &[u8]) -> bool {
    match v.first() {
        Some(b'$') => {
            v.len() > 1
                && (v[1] == b'{' || v[1] == b'(' || v[1].is_ascii_alphabetic() || v[1] == b'_')
        }
        Some(b'%') => v.last() == Some(&b'%'),
        _ => false,
    }
}

/// A value that is a placeholder, a documentation example or has too little variety to be a
/// real secret.
pub fn is_placeholder(value: &[u8]) -> bool {
    if is_variable_reference(value) || KNOWN_PUBLIC.iter().any(|k| k.as_bytes() == value) {
        return true;
    }
    let lower: Vec<u8> = value.iter().map(u8::to_ascii_lowercase).collect();
    let Ok(l) = std::str::from_utf8(&lower) else {
        return false;
    };
    if PLACEHOLDER_WORDS.contains(&l) || PLACEHOLDER_PARTS.iter().any(|p| l.contains(p)) {
        return true;
    }
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in &lower {
        if !seen[b as usize] {
            seen[b as usize] = true;
            distinct += 1;
        }
    }
    value.len() >= 8 && distinct <= 3
}

/// Redacted preview: a few characters from each end and the length; never the whole value.
pub fn preview(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(value);
    let chars: Vec<char> = s
        .chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '·'
            } else {
                c
            }
        })
        .collect();
    let n = chars.len();
    let head: String;
    let tail: String;
    if n >= 24 {
        head = chars[..4].iter().collect();
        tail = chars[n - 4..].iter().collect();
    } else if n >= 12 {
        head = chars[..3].iter().collect();
        tail = chars[n - 2..].iter().collect();
    } else if n >= 6 {
        head = chars[..1].iter().collect();
        tail = String::new();
    } else {
        head = String::new();
        tail = String::new();
    }
    format!("{head}\u{2026}{tail} ({n} chars)")
}

/// Stable fingerprint of (rule id, value): the first 16 bytes of SHA-256, hex. Never the value.
pub fn fingerprint(rule_id: &str, value: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"airlock-finding-v1\0");
    h.update(rule_id.as_bytes());
    h.update([0u8]);
    h.update(value);
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(luhn_ok("4111111111111111"));
        assert!(!luhn_ok("4111111111111112"));
        assert!(card_ok("4111 1111 1111 1111"));
        assert!(!card_ok("0000000000000000"));
    }

    #[test]
    fn iban() {
        assert!(iban_ok("GB82WEST12345698765432"));
        assert!(iban_ok("DE89 3704 0044 0532 0130 00"));
        assert!(!iban_ok("GB82WEST12345698765433"));
        assert!(!iban_ok("XX82WEST12345698765432"));
    }

    #[test]
    fn china_id() {
        assert!(china_id_ok("11010519491231002X"));
        assert!(!china_id_ok("110105194912310021"));
        assert!(!china_id_ok("11010519491331002X"));
    }

    #[test]
    fn crc32_token_roundtrip() {
        let random = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1";
        let token = format!("ghp_{random}{}", crc32_base62_suffix(random));
        assert!(crc32_base62_ok(&token));
        let mut bad = token.clone().into_bytes();
        bad[10] = if bad[10] == b'x' { b'y' } else { b'x' };
        assert!(!crc32_base62_ok(std::str::from_utf8(&bad).unwrap()));
    }

    #[test]
    fn preview_never_whole() {
        let p = preview(b"ghp_abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(p, "ghp_\u{2026}6789 (40 chars)");
        assert_eq!(preview(b"abc"), "\u{2026} (3 chars)");
        assert!(!preview(b"hunter22").contains("hunter22"));
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"ab") - 1.0).abs() < 1e-9);
    }

    /// What a generic rule's validator says of `value` where it stands in `text`.
    fn generic_in(v: Validator, text: &str, value: &str) -> bool {
        let start = text.find(value).expect("value in text");
        matches!(
            run_in(v, text.as_bytes(), start, start + value.len()),
            Verdict::Accept { .. }
        )
    }

    #[test]
    fn generic_values_that_are_code_are_not_findings() {
        let v = Validator::GenericSecret;
        let code = [
            (
                "secret_key_len = MLKEM512_SECRET_KEY_BYTES;",
                "MLKEM512_SECRET_KEY_BYTES",
            ),
            (
                "let s = assert_fips_status_indicator!(",
                "assert_fips_status_indicator!",
            ),
            ("let mut secret = vec![0u8; n];", "vec![0u8"),
            ("struct_token: Token![struct],", "Token![struct"),
            (
                "x = write_levels_[level].secret;",
                "write_levels_[level].secret",
            ),
            (
                "len = params.shared_secret_len/2;",
                "params.shared_secret_len/2",
            ),
            ("// s = client_pk^server_sk;", "client_pk^server_sk"),
            ("let c = token1.child_token();", "token1.child_token"),
            ("let k: Curve25519SeedBin<'_> = k", "Curve25519SeedBin"),
            ("let k: Pkcs8V1Der2 = my.as_der();", "Pkcs8V1Der2"),
            ("if( tokenType==TK_VARIABLE ){", "=TK_VARIABLE"),
            ("m = !!extended_master_secret;", "!!extended_master_secret"),
            ("Ok(Secrets::Aes128Gcm { key })", ":Aes128Gcm"),
            (
                "g: x25519_generate_private_key,",
                "x25519_generate_private_key",
            ),
            ("colon2_token: node.colon2_token,", "node.colon2_token"),
            (
                "let tokens = self.0.to_token_stream();",
                "self.0.to_token_stream",
            ),
            ("let to_tokens = |tokens: &mut TokenStream| {", "|tokens:"),
            (
                "let f = move |token: CancellationToken| {",
                "CancellationToken|",
            ),
        ];
        for (text, value) in code {
            assert!(!generic_in(v, text, value), "took {value:?} in {text:?}");
        }
        // The same characters quoted are a literal, and an env line is a value.
        let values = [
            (
                "password = \"correct_master_key_123!\"",
                "correct_master_key_123!",
            ),
            ("token = 'vec![0u8aZ9q'", "vec![0u8aZ9q"),
            ("token = \"Pkcs8V1Der2\";", "Pkcs8V1Der2"),
            (
                "API_KEY=PT7HjSd5J1AHMe4TSkjrbo6M",
                "PT7HjSd5J1AHMe4TSkjrbo6M",
            ),
            ("token: aZ9q/Xk2+Lm7Pw==", "aZ9q/Xk2+Lm7Pw=="),
            (
                "AUTH_TOKEN=1SuZuKr2ZNlNIXDdECBs1fju",
                "1SuZuKr2ZNlNIXDdECBs1fju",
            ),
            ("secret = \"pn8J39SYJc6U!g4LTx\"", "pn8J39SYJc6U!g4LTx"),
            ("password = \"Summer2024Pass\"", "Summer2024Pass"),
            ("API_KEY=Tr0ub4dor&3xYz", "Tr0ub4dor&3xYz"),
            ("token = \"node.colon2_token\"", "node.colon2_token"),
            (
                "JWT_TOKEN=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
        ];
        for (text, value) in values {
            assert!(generic_in(v, text, value), "dropped {value:?} in {text:?}");
        }
    }

    #[test]
    fn random_keys_are_not_taken_for_names() {
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (alphabet, name) in [
            (
                &b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[..],
                "base62",
            ),
            (
                &b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"[..],
                "base64url",
            ),
            (&b"0123456789abcdefghijklmnopqrstuvwxyz"[..], "base36"),
        ] {
            for len in [12usize, 16, 24, 32, 40] {
                let mut taken = 0;
                for _ in 0..20_000 {
                    let key: String = (0..len)
                        .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                        .collect();
                    taken += usize::from(screaming_snake(&key) || snake_words(&key));
                }
                // Upper case with `_` is a constant's shape; the rest at most 1 in 2,000.
                let most = if name == "upper and _" { 20_000 } else { 10 };
                assert!(
                    taken <= most,
                    "{name}, {len} chars: {taken} of 20,000 taken for names"
                );
            }
        }
    }

    #[test]
    fn numbers_in_a_list_of_hex_groups_are_not_phone_numbers() {
        let phone = |text: &str, value: &str| {
            let start = text.find(value).expect("value in text");
            matches!(
                run_in(
                    Validator::Phone,
                    text.as_bytes(),
                    start,
                    start + value.len()
                ),
                Verdict::Accept { .. }
            )
        };
        for (text, value) in [
            ("1E14 0304;0045 0304 0300 0304;1E14 0304;", "0304 0300 0304"),
            (
                "FEF5 0656;0644 0622 0656;0644 0627 0656 0653; #",
                "0644 0622 0656",
            ),
            ("0045 0304 0300 0304; # (E)", "0304 0300 0304"),
        ] {
            assert!(!phone(text, value), "{value:?} in {text:?}");
        }
        for (text, value) in [
            ("Tel 020 7946 0958", "020 7946 0958"),
            ("call 030-1234-5678;", "030-1234-5678"),
            ("0161 496 0000, 0113 496 0000", "0161 496 0000"),
            ("0161 496 0000, 0113 496 0000", "0113 496 0000"),
            ("office: 0161 4960 0000 (main)", "0161 4960 0000"),
        ] {
            assert!(phone(text, value), "{value:?} in {text:?}");
        }
    }

    #[test]
    fn ssn() {
        assert!(ssn_ok("536-22-1234"));
        assert!(!ssn_ok("666-22-1234"));
        assert!(!ssn_ok("123-45-6789"));
    }
}
