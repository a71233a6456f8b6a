//! JetBrains IDE plugins: where they are installed, and what their `META-INF/plugin.xml` says.
//!
//! A plugin is a directory `<plugins>/<name>/lib/*.jar` (one of the jars holds
//! `META-INF/plugin.xml`) or a single jar `<plugins>/<name>.jar`. Only the descriptor's `<id>`,
//! `<name>` and `<version>` are read, with a tiny bounded scanner (no DTDs, no entity
//! expansion, no dependency on an XML library). Jars are opened with the `zip` crate, bounded:
//! the jar's size ([`MAX_JAR_BYTES`]), its central directory ([`MAX_JAR_ENTRIES`],
//! [`MAX_CENTRAL_DIRECTORY_BYTES`], checked before the archive is parsed) and the descriptor's
//! size ([`MAX_PLUGIN_XML_BYTES`], decompressed). A malformed jar or descriptor is an error
//! value, never a panic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest jar opened.
pub const MAX_JAR_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries a jar may declare in its central directory.
pub const MAX_JAR_ENTRIES: u64 = 100_000;
/// Largest central directory a jar may declare.
pub const MAX_CENTRAL_DIRECTORY_BYTES: u64 = 16 * 1024 * 1024;
/// Largest `META-INF/plugin.xml` read (decompressed).
pub const MAX_PLUGIN_XML_BYTES: u64 = 1024 * 1024;
/// Jars looked at in one plugin's `lib` directory.
pub const MAX_JARS_PER_PLUGIN: usize = 64;
/// Element nesting accepted in a descriptor.
const MAX_XML_DEPTH: usize = 256;
/// Longest `<id>` or `<name>` kept.
const MAX_VALUE_CHARS: usize = 256;

const DESCRIPTOR: &str = "META-INF/plugin.xml";

/// What a plugin's `META-INF/plugin.xml` says (each value trimmed, entity-decoded, free of
/// control characters; absent when missing, empty or unusable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// Why a jar's descriptor could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JarError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {MAX_JAR_BYTES} bytes; not opened")]
    TooLarge,
    #[error(
        "declares {entries} entries / a {bytes}-byte central directory (limits {MAX_JAR_ENTRIES} / {MAX_CENTRAL_DIRECTORY_BYTES}); not opened"
    )]
    TooManyEntries { entries: u64, bytes: u64 },
    #[error("not a valid jar: {0}")]
    Zip(String),
    #[error("{DESCRIPTOR} is larger than {MAX_PLUGIN_XML_BYTES} bytes")]
    DescriptorTooLarge,
    #[error("invalid {DESCRIPTOR}: {0}")]
    Xml(&'static str),
}

/// An IDE configuration directory name split into product and version:
/// `IntelliJIdea2024.3` → (`IntelliJIdea`, `2024.3`), `AndroidStudioPreview2024.2` →
/// (`AndroidStudioPreview`, `2024.2`). `None` for anything else (`Toolbox`, `consentOptions`).
pub fn ide_dir(name: &str) -> Option<(String, String)> {
    let name = name.strip_prefix('.').unwrap_or(name);
    let split = name.find(|c: char| c.is_ascii_digit())?;
    let (product, version) = name.split_at(split);
    let product_ok = !product.is_empty()
        && product.len() <= 64
        && product.starts_with(|c: char| c.is_ascii_uppercase())
        && product.chars().all(|c| c.is_ascii_alphanumeric());
    let parts: Vec<&str> = version.split('.').collect();
    let version_ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit()));
    (product_ok && version_ok).then(|| (product.to_string(), version.to_string()))
}

/// The name a plugin directory or jar is matched by when its descriptor cannot be read: the
/// directory name, or the jar's file name without `.jar` and without a trailing `-<version>`
/// (`github-copilot-intellij-1.5.30.jar` → `github-copilot-intellij`).
pub fn fallback_name(entry: &str, is_jar: bool) -> String {
    if !is_jar {
        return entry.to_string();
    }
    let stem = strip_jar(entry).unwrap_or(entry);
    // Cut at the first `-` followed by a digit.
    let bytes = stem.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return stem[..i].to_string();
        }
    }
    stem.to_string()
}

/// `name` without a (case-insensitive) `.jar` suffix, if it has one.
pub fn strip_jar(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(4)?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".jar")).then(|| &name[..cut])
}

/// The descriptor of the jar at `host` (a path on this machine). `Ok(None)` when the jar is a
/// valid archive without `META-INF/plugin.xml` (a library jar of the plugin).
pub fn read_jar(host: &Path) -> Result<Option<Descriptor>, JarError> {
    let mut f = File::open(host)?;
    let len = f.metadata()?.len();
    if len > MAX_JAR_BYTES {
        return Err(JarError::TooLarge);
    }
    check_central_directory(&mut f, len)?;
    f.seek(SeekFrom::Start(0))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| JarError::Zip(e.to_string()))?;
    let entry = match zip.by_name(DESCRIPTOR) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(JarError::Zip(e.to_string())),
    };
    let mut xml = Vec::new();
    entry
        .take(MAX_PLUGIN_XML_BYTES + 1)
        .read_to_end(&mut xml)
        .map_err(|e| JarError::Zip(format!("{DESCRIPTOR}: {e}")))?;
    if xml.len() as u64 > MAX_PLUGIN_XML_BYTES {
        return Err(JarError::DescriptorTooLarge);
    }
    parse_descriptor(&xml).map(Some)
}

/// Refuse a jar whose end-of-central-directory record (zip64 included) declares more entries
/// or a larger central directory than the limits, before the zip reader allocates for them.
/// A jar without a readable record is left to the zip reader to reject.
fn check_central_directory(f: &mut File, len: u64) -> Result<(), JarError> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const EOCD_LEN: usize = 22;
    let tail_len = len.min(EOCD_LEN as u64 + u64::from(u16::MAX));
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    (&mut *f).take(tail_len).read_to_end(&mut tail)?;
    let Some(at) = (0..tail.len().saturating_sub(EOCD_LEN - 1))
        .rev()
        .find(|&i| tail[i..].starts_with(EOCD))
    else {
        return Ok(());
    };
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let mut entries = u16_at(&tail, at + 10);
    let mut bytes = u32_at(&tail, at + 12);
    let offset = u32_at(&tail, at + 16);
    if entries == 0xFFFF || bytes == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
        // zip64: the locator sits just before the record and points at the zip64 record.
        const LOCATOR: &[u8] = b"PK\x06\x07";
        if at >= 20 && tail[at - 20..].starts_with(LOCATOR) {
            let l = &tail[at - 20..at];
            let rec_at = u64::from_le_bytes([l[8], l[9], l[10], l[11], l[12], l[13], l[14], l[15]]);
            if rec_at.saturating_add(56) <= len {
                f.seek(SeekFrom::Start(rec_at))?;
                let mut rec = [0u8; 56];
                f.read_exact(&mut rec)?;
                if rec.starts_with(b"PK\x06\x06") {
                    let u64_at = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&rec[i..i + 8]);
                        u64::from_le_bytes(b)
                    };
                    entries = u64_at(32);
                    bytes = u64_at(40);
                }
            }
        }
    }
    if entries > MAX_JAR_ENTRIES || bytes > MAX_CENTRAL_DIRECTORY_BYTES {
        return Err(JarError::TooManyEntries { entries, bytes });
    }
    Ok(())
}

/// `<id>`, `<name>` and `<version>` of a plugin descriptor: direct children of the root
/// `<idea-plugin>` element, the first of each. Comments, CDATA, processing instructions and
/// declarations are skipped; entities other than the five predefined ones are not expanded.
pub fn parse_descriptor(xml: &[u8]) -> Result<Descriptor, JarError> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let s = std::str::from_utf8(xml).map_err(|_| JarError::Xml("not UTF-8"))?;
    let mut d = Descriptor::default();
    // The stack of open element names; `capture` is the text of the id/name/version being read.
    let mut stack: Vec<&str> = Vec::new();
    let mut capture: Option<String> = None;
    let mut root_seen = false;
    let mut i = 0;
    while let Some(off) = s[i..].find('<') {
        let lt = i + off;
        if let Some(c) = capture.as_mut()
            && stack.len() == 2
        {
            c.push_str(&s[i..lt]);
        }
        let rest = &s[lt..];
        let skip_to = |open: usize, close: &str, what: &'static str| {
            rest[open..]
                .find(close)
                .map(|e| lt + open + e + close.len())
                .ok_or(JarError::Xml(what))
        };
        if rest.starts_with("<!--") {
            i = skip_to(4, "-->", "unterminated comment")?;
        } else if rest.starts_with("<![CDATA[") {
            let end = skip_to(9, "]]>", "unterminated CDATA")?;
            if let Some(c) = capture.as_mut()
                && stack.len() == 2
            {
                c.push_str(&s[lt + 9..end - 3]);
            }
            i = end;
        } else if rest.starts_with("<?") {
            i = skip_to(2, "?>", "unterminated processing instruction")?;
        } else if let Some(decl) = rest.strip_prefix("<!") {
            if decl.split('>').next().is_some_and(|d| d.contains('[')) {
                return Err(JarError::Xml("a document type with an internal subset"));
            }
            i = skip_to(2, ">", "unterminated declaration")?;
        } else if let Some(close) = rest.strip_prefix("</") {
            let end = close
                .find('>')
                .ok_or(JarError::Xml("unterminated end tag"))?;
            let name = close[..end].trim();
            if stack.pop() != Some(name) {
                return Err(JarError::Xml("mismatched end tag"));
            }
            if stack.len() == 1
                && let Some(text) = capture.take()
            {
                let slot = match name {
                    "id" => &mut d.id,
                    "name" => &mut d.name,
                    _ => &mut d.version,
                };
                if slot.is_none() {
                    *slot = clean_value(&text);
                }
            }
            i = lt + 2 + end + 1;
        } else {
            let end = tag_end(&rest[1..]).ok_or(JarError::Xml("unterminated start tag"))?;
            let body = &rest[1..1 + end];
            let self_closing = body.ends_with('/');
            let name = body
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("");
            if name.is_empty() {
                return Err(JarError::Xml("a tag without a name"));
            }
            if stack.is_empty() {
                if root_seen {
                    return Err(JarError::Xml("more than one root element"));
                }
                if name != "idea-plugin" {
                    return Err(JarError::Xml("the root element is not <idea-plugin>"));
                }
                root_seen = true;
            }
            if !self_closing {
                stack.push(name);
                if stack.len() > MAX_XML_DEPTH {
                    return Err(JarError::Xml("nested too deeply"));
                }
                if stack.len() == 2 && matches!(name, "id" | "name" | "version") {
                    capture = Some(String::new());
                }
            }
            i = lt + 1 + end + 1;
        }
    }
    if !root_seen {
        return Err(JarError::Xml("no <idea-plugin> element"));
    }
    if !stack.is_empty() {
        return Err(JarError::Xml("unterminated element"));
    }
    Ok(d)
}

/// The index of the `>` ending a start tag, quotes respected.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// Trimmed, entity-decoded, bounded and printable; else `None`.
fn clean_value(raw: &str) -> Option<String> {
    let v = raw
        .trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    (!v.is_empty() && v.chars().count() <= MAX_VALUE_CHARS && !v.chars().any(char::is_control))
        .then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields_are_the_root_children() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<!-- <id>not.this</id> -->
<idea-plugin xmlns:xi="http://www.w3.org/2001/XInclude" require-restart="true">
  <id>com.github.copilot</id>
  <name>GitHub Copilot</name>
  <vendor url="https://github.com">GitHub</vendor>
  <version>1.5.30-242</version>
  <description><![CDATA[<p><version>9.9.9</version> a <b>tool</b></p>]]></description>
  <idea-version since-build="242" until-build="242.*"/>
  <extensions defaultExtensionNs="com.intellij"><id>nested.id</id></extensions>
  <id>second.id</id>
</idea-plugin>
"#;
        assert_eq!(
            parse_descriptor(xml).unwrap(),
            Descriptor {
                id: Some("com.github.copilot".into()),
                name: Some("GitHub Copilot".into()),
                version: Some("1.5.30-242".into()),
            }
        );
    }

    #[test]
    fn entities_cdata_and_bad_values() {
        let xml = b"<idea-plugin><name>A &amp; B</name><id><![CDATA[x.y]]></id>\
<version>1.0\x1b[2J</version></idea-plugin>";
        let d = parse_descriptor(xml).unwrap();
        assert_eq!(d.name.as_deref(), Some("A & B"));
        assert_eq!(d.id.as_deref(), Some("x.y"));
        assert_eq!(d.version, None);
    }

    #[test]
    fn malformed_descriptors_are_errors() {
        for bad in [
            &b"<idea-plugin><id>x</id>"[..],
            b"<plugin><id>x</id></plugin>",
            b"<idea-plugin><id>x</name></idea-plugin>",
            b"<idea-plugin><!-- never closed",
            b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]><idea-plugin/>",
            b"\xff\xfe<idea-plugin/>",
            b"no xml at all",
            b"<idea-plugin a=\"1><id>x</id></idea-plugin>",
        ] {
            assert!(
                parse_descriptor(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("<idea-plugin>{}", "<a>".repeat(10_000));
        assert!(matches!(
            parse_descriptor(deep.as_bytes()),
            Err(JarError::Xml("nested too deeply"))
        ));
    }

    #[test]
    fn ide_directory_names() {
        assert_eq!(
            ide_dir("IntelliJIdea2024.3"),
            Some(("IntelliJIdea".into(), "2024.3".into()))
        );
        assert_eq!(
            ide_dir(".PyCharmCE2019.3"),
            Some(("PyCharmCE".into(), "2019.3".into()))
        );
        for no in [
            "Toolbox",
            "consentOptions",
            "2024.3",
            "Idea2024",
            "a2024.1",
            "X1.2.3.4",
        ] {
            assert_eq!(ide_dir(no), None, "{no}");
        }
    }

    #[test]
    fn fallback_names() {
        assert_eq!(
            fallback_name("github-copilot-intellij-1.5.30.jar", true),
            "github-copilot-intellij"
        );
        assert_eq!(fallback_name("Plugin.JAR", true), "Plugin");
        assert_eq!(
            fallback_name("claude-code-jetbrains-plugin", false),
            "claude-code-jetbrains-plugin"
        );
        assert_eq!(strip_jar("x.txt"), None);
        assert_eq!(strip_jar("é.jar"), Some("é"));
    }
}
