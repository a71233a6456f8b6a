//! A quick look at a request body: model and stream flag, without building a document.

use serde::Serialize;

use crate::json::Str;
use crate::{Api, WireError};

/// What routing and policy need before the full inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Peek {
    pub model: Option<String>,
    pub stream: bool,
}

/// Read the top-level `model` and `stream` members, skimming over everything else (strings are
/// skipped with SIMD search; nothing is allocated). A duplicated `model` or `stream` key is an
/// error: parsers disagree on which one wins, and routing must see what the upstream sees.
pub fn peek(_api: Api, body: &[u8]) -> Result<Peek, WireError> {
    let src = std::str::from_utf8(body).map_err(|e| WireError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut s = Skim { b: body, i: 0 };
    let mut out = Peek::default();
    let (mut seen_model, mut seen_stream) = (false, false);
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(WireError::NotAnObject);
    }
    s.i += 1;
    s.ws();
    if s.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.expect(b':')?;
        s.ws();
        if key.eq_str(src, "model") {
            if std::mem::replace(&mut seen_model, true) {
                return Err(s.err("duplicate \"model\" key"));
            }
            if s.peek() == Some(b'"') {
                let v = s.string()?;
                out.model = Some(v.decode(src).text.into_owned());
            } else {
                s.skip_value()?;
            }
        } else if key.eq_str(src, "stream") {
            if std::mem::replace(&mut seen_stream, true) {
                return Err(s.err("duplicate \"stream\" key"));
            }
            if body[s.i..].starts_with(b"true") {
                out.stream = true;
            }
            s.skip_value()?;
        } else {
            s.skip_value()?;
        }
        s.ws();
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b'}') => return Ok(out),
            _ => return Err(s.err("expected ',' or '}'")),
        }
    }
}

struct Skim<'a> {
    b: &'a [u8],
    i: usize,
}

impl Skim<'_> {
    fn err(&self, reason: &'static str) -> WireError {
        WireError::Json {
            offset: self.i,
            reason,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), WireError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }
    fn string(&mut self) -> Result<Str, WireError> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                return Err(self.err("unterminated string"));
            };
            self.i += off;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(Str {
                    start,
                    end: self.i - 1,
                    escaped,
                });
            }
            escaped = true;
            self.i += 2;
            if self.i > self.b.len() {
                return Err(self.err("unterminated string"));
            }
        }
    }
    /// Skip one value without validating it (the full inspection validates).
    fn skip_value(&mut self) -> Result<(), WireError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return Err(self.err("unexpected end of input")),
                        Some(b'"') => {
                            self.string()?;
                        }
                        Some(b'{' | b'[') => {
                            depth += 1;
                            self.i += 1;
                        }
                        Some(b'}' | b']') => {
                            depth = depth.saturating_sub(1);
                            self.i += 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        Some(_) => self.i += 1,
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    Err(self.err("expected a value"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_and_stream_anywhere() {
        let p = peek(
            Api::AnthropicMessages,
            br#"{"messages":[{"a":"x\"}"}],"model":"claude-x","n":1.5,"stream":true}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Peek {
                model: Some("claude-x".into()),
                stream: true
            }
        );
        let p = peek(
            Api::OpenAiChat,
            br#" { "model" : "g\u0070t" , "stream" : false } "#,
        )
        .unwrap();
        assert_eq!(
            p,
            Peek {
                model: Some("gpt".into()),
                stream: false
            }
        );
        assert_eq!(peek(Api::OpenAiChat, b"{}").unwrap(), Peek::default());
        assert!(peek(Api::OpenAiChat, br#"{"model":"a","model":"b"}"#).is_err());
        assert!(peek(Api::OpenAiChat, br#"[1]"#).is_err());
        assert!(peek(Api::OpenAiChat, br#"{"model":"a""#).is_err());
        assert!(peek(Api::OpenAiChat, br#"{"x":[1,2"#).is_err());
        assert!(peek(Api::OpenAiChat, br#"{"model":}"#).is_err());
    }
}
