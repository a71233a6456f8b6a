//! Static evaluation of constant JavaScript expressions, to see through obfuscation:
//! string concatenation, `String.fromCharCode`, arrays of character codes mapped through XOR or
//! arithmetic, `atob` / `Buffer.from(s, 'base64'|'hex').toString()`, `split('').reverse()
//! .join('')`, `TextDecoder`, and references to constants declared earlier.
//!
//! Every evaluation is bounded: a step budget, a cap on string and array sizes, and a depth
//! limit, so hostile input cannot make it slow or large.

use base64::Engine as _;
use oxc_ast::ast::{
    Argument, ArrayExpressionElement, ArrowFunctionBody, ArrowFunctionExpression, BindingPattern,
    Expression, Function, Statement,
};
use oxc_syntax::operator::{BinaryOperator, UnaryOperator};

/// A constant value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
    Bytes(Vec<u8>),
    Arr(Vec<Val>),
    Bool(bool),
    Undef,
}

/// Cap on the length of a folded string or array.
pub const MAX_FOLD_LEN: usize = 1 << 20;
const MAX_STEPS: usize = 200_000;
const MAX_DEPTH: usize = 96;

/// Decoding steps, recorded to explain (and decide whether to report) a folded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    FromCharCode,
    Base64,
    Hex,
    Xor,
    Arithmetic,
    Reverse,
    CharCodeAt,
    TextDecoder,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::FromCharCode => "String.fromCharCode",
            Step::Base64 => "base64",
            Step::Hex => "hex",
            Step::Xor => "xor",
            Step::Arithmetic => "char-code arithmetic",
            Step::Reverse => "reverse",
            Step::CharCodeAt => "charCodeAt",
            Step::TextDecoder => "TextDecoder",
        }
    }
}

/// Name lookup for identifiers (constants declared in scope).
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<Val>;
}

/// One evaluation.
pub struct Folder<'l> {
    lookup: &'l dyn Lookup,
    steps_left: usize,
    bound: Vec<(String, Val)>,
    pub steps: Vec<Step>,
    pub xor_keys: Vec<i64>,
}

impl Val {
    pub fn to_js_string(&self) -> Option<String> {
        Some(match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => num_to_string(*n),
            Val::Bool(b) => b.to_string(),
            Val::Undef => "undefined".into(),
            Val::Arr(a) => {
                let mut parts = Vec::with_capacity(a.len());
                for v in a {
                    parts.push(v.to_js_string()?);
                }
                parts.join(",")
            }
            Val::Bytes(b) => b
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    fn as_num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Val::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Val::Str(s) => s.len(),
            Val::Bytes(b) => b.len(),
            Val::Arr(a) => a.len(),
            _ => 1,
        }
    }
}

fn num_to_string(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn to_i32(n: f64) -> i32 {
    if !n.is_finite() {
        return 0;
    }
    (n.trunc() as i64 & 0xffff_ffff) as u32 as i32
}

fn bytes_of(v: &Val) -> Option<Vec<u8>> {
    match v {
        Val::Bytes(b) => Some(b.clone()),
        Val::Arr(a) => a
            .iter()
            .map(|x| x.as_num().map(|n| to_i32(n) as u8))
            .collect(),
        _ => None,
    }
}

/// Decode base64 leniently (standard or URL alphabet, padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = clean.trim_end_matches('=');
    let e = base64::engine::general_purpose::STANDARD_NO_PAD;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    e.decode(trimmed).or_else(|_| u.decode(trimmed)).ok()
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&x| x as char).collect()
}

fn from_char_codes(args: &[Val]) -> Option<String> {
    let mut s = String::new();
    for a in args {
        let n = a.as_num()?;
        let code = (to_i32(n) as u32) & 0xffff;
        s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
    }
    Some(s)
}

impl<'l> Folder<'l> {
    pub fn new(lookup: &'l dyn Lookup) -> Self {
        Self {
            lookup,
            steps_left: MAX_STEPS,
            bound: Vec::new(),
            steps: Vec::new(),
            xor_keys: Vec::new(),
        }
    }

    fn note(&mut self, s: Step) {
        if !self.steps.contains(&s) {
            self.steps.push(s);
        }
    }

    /// Evaluate an expression to a constant, or `None`.
    pub fn eval(&mut self, e: &Expression<'_>) -> Option<Val> {
        self.eval_d(e, 0)
    }

    fn tick(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH || self.steps_left == 0 {
            return None;
        }
        self.steps_left -= 1;
        Some(())
    }

    fn eval_d(&mut self, e: &Expression<'_>, d: usize) -> Option<Val> {
        self.tick(d)?;
        let v = match e {
            Expression::StringLiteral(s) => Val::Str(s.value.to_string()),
            Expression::NumericLiteral(n) => Val::Num(n.value),
            Expression::BooleanLiteral(b) => Val::Bool(b.value),
            Expression::TemplateLiteral(t) => {
                let mut s = String::new();
                for (i, q) in t.quasis.iter().enumerate() {
                    s.push_str(q.value.cooked.as_deref()?);
                    if let Some(x) = t.expressions.get(i) {
                        s.push_str(&self.eval_d(x, d + 1)?.to_js_string()?);
                    }
                }
                Val::Str(s)
            }
            Expression::Identifier(id) => {
                let name = id.name.as_str();
                if let Some((_, v)) = self.bound.iter().rev().find(|(n, _)| n == name) {
                    v.clone()
                } else if name == "undefined" {
                    Val::Undef
                } else {
                    self.lookup.lookup(name)?
                }
            }
            Expression::ParenthesizedExpression(p) => self.eval_d(&p.expression, d + 1)?,
            Expression::ArrayExpression(a) => {
                let mut out = Vec::with_capacity(a.elements.len());
                for el in &a.elements {
                    match el {
                        ArrayExpressionElement::SpreadElement(s) => match self
                            .eval_d(&s.argument, d + 1)?
                        {
                            Val::Arr(v) => out.extend(v),
                            Val::Str(s) => out.extend(s.chars().map(|c| Val::Str(c.to_string()))),
                            _ => return None,
                        },
                        ArrayExpressionElement::Elision(_) => out.push(Val::Undef),
                        other => out.push(self.eval_d(other.as_expression()?, d + 1)?),
                    }
                    if out.len() > MAX_FOLD_LEN {
                        return None;
                    }
                }
                Val::Arr(out)
            }
            Expression::UnaryExpression(u) => {
                let a = self.eval_d(&u.argument, d + 1)?;
                match u.operator {
                    UnaryOperator::UnaryNegation => Val::Num(-a.as_num()?),
                    UnaryOperator::UnaryPlus => Val::Num(a.as_num()?),
                    UnaryOperator::BitwiseNot => Val::Num(f64::from(!to_i32(a.as_num()?))),
                    _ => return None,
                }
            }
            Expression::BinaryExpression(b) => {
                let l = self.eval_d(&b.left, d + 1)?;
                let r = self.eval_d(&b.right, d + 1)?;
                self.binary(b.operator, &l, &r)?
            }
            Expression::CallExpression(c) => self.call(&c.callee, &c.arguments, d)?,
            Expression::NewExpression(n) => {
                let Expression::Identifier(id) = &n.callee else {
                    return None;
                };
                match id.name.as_str() {
                    "Uint8Array" | "Buffer" => {
                        let a = self.args(&n.arguments, d)?;
                        Val::Bytes(bytes_of(a.first()?)?)
                    }
                    _ => return None,
                }
            }
            Expression::StaticMemberExpression(m) if m.property.name == "length" => {
                Val::Num(self.eval_d(&m.object, d + 1)?.len() as f64)
            }
            Expression::ComputedMemberExpression(m) => {
                let o = self.eval_d(&m.object, d + 1)?;
                let i = self.eval_d(&m.expression, d + 1)?.as_num()?;
                let i = usize::try_from(i as i64).ok()?;
                match o {
                    Val::Arr(a) => a.get(i)?.clone(),
                    Val::Bytes(b) => Val::Num(f64::from(*b.get(i)?)),
                    Val::Str(s) => Val::Str(s.encode_utf16().nth(i).map(|u| {
                        char::from_u32(u32::from(u))
                            .unwrap_or('\u{fffd}')
                            .to_string()
                    })?),
                    _ => return None,
                }
            }
            _ => return None,
        };
        if v.len() > MAX_FOLD_LEN {
            return None;
        }
        Some(v)
    }

    fn binary(&mut self, op: BinaryOperator, l: &Val, r: &Val) -> Option<Val> {
        use BinaryOperator as B;
        if op == B::Addition {
            if matches!(l, Val::Str(_) | Val::Arr(_)) || matches!(r, Val::Str(_) | Val::Arr(_)) {
                let mut s = l.to_js_string()?;
                s.push_str(&r.to_js_string()?);
                return Some(Val::Str(s));
            }
            return Some(Val::Num(l.as_num()? + r.as_num()?));
        }
        let (a, b) = (l.as_num()?, r.as_num()?);
        let v = match op {
            B::Subtraction => a - b,
            B::Multiplication => a * b,
            B::Division => a / b,
            B::Remainder => a % b,
            B::BitwiseXOR => {
                self.note(Step::Xor);
                let k = i64::from(to_i32(b));
                if self.xor_keys.len() < 4 && !self.xor_keys.contains(&k) {
                    self.xor_keys.push(k);
                }
                f64::from(to_i32(a) ^ to_i32(b))
            }
            B::BitwiseAnd => f64::from(to_i32(a) & to_i32(b)),
            B::BitwiseOR => f64::from(to_i32(a) | to_i32(b)),
            B::ShiftLeft => f64::from(to_i32(a).wrapping_shl(to_i32(b) as u32 & 31)),
            B::ShiftRight => f64::from(to_i32(a).wrapping_shr(to_i32(b) as u32 & 31)),
            B::ShiftRightZeroFill => {
                f64::from((to_i32(a) as u32).wrapping_shr(to_i32(b) as u32 & 31))
            }
            B::StrictEquality | B::Equality => return Some(Val::Bool(l == r)),
            B::StrictInequality | B::Inequality => return Some(Val::Bool(l != r)),
            _ => return None,
        };
        if !self.bound.is_empty() && matches!(op, B::Subtraction | B::Multiplication | B::Remainder)
        {
            self.note(Step::Arithmetic);
        }
        Some(Val::Num(v))
    }

    fn args(&mut self, args: &[Argument<'_>], d: usize) -> Option<Vec<Val>> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            match a {
                Argument::SpreadElement(s) => match self.eval_d(&s.argument, d + 1)? {
                    Val::Arr(v) => out.extend(v),
                    Val::Bytes(b) => out.extend(b.into_iter().map(|x| Val::Num(f64::from(x)))),
                    _ => return None,
                },
                other => out.push(self.eval_d(other.as_expression()?, d + 1)?),
            }
        }
        Some(out)
    }

    /// Apply a one- or two-parameter function literal (arrow or `function`) to values.
    fn apply(&mut self, f: &Expression<'_>, vals: &[Val], d: usize) -> Option<Val> {
        let (params, body): (Vec<String>, &Expression<'_>) = match f {
            Expression::ArrowFunctionExpression(a) => (
                param_names(a.params.items.iter().map(|p| &p.pattern))?,
                arrow_body(a)?,
            ),
            Expression::FunctionExpression(func) => (
                param_names(func.params.items.iter().map(|p| &p.pattern))?,
                function_body(func)?,
            ),
            _ => return None,
        };
        let n = self.bound.len();
        for (i, p) in params.iter().enumerate() {
            self.bound
                .push((p.clone(), vals.get(i).cloned().unwrap_or(Val::Undef)));
        }
        let r = self.eval_d(body, d + 1);
        self.bound.truncate(n);
        r
    }

    fn map(&mut self, items: Vec<Val>, f: &Expression<'_>, d: usize) -> Option<Vec<Val>> {
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            out.push(self.apply(f, &[v, Val::Num(i as f64)], d)?);
        }
        Some(out)
    }

    fn call(&mut self, callee: &Expression<'_>, args: &[Argument<'_>], d: usize) -> Option<Val> {
        match callee {
            Expression::Identifier(id) => match id.name.as_str() {
                "atob" => {
                    let a = self.args(args, d)?;
                    let Val::Str(s) = a.first()? else { return None };
                    self.note(Step::Base64);
                    Some(Val::Str(latin1(&base64_decode(s)?)))
                }
                "String" => Some(Val::Str(self.args(args, d)?.first()?.to_js_string()?)),
                _ => {
                    // A function literal bound to a constant is not followed (no calls).
                    None
                }
            },
            Expression::StaticMemberExpression(m) => {
                let method = m.property.name.as_str();
                // Static namespaces first.
                if let Expression::Identifier(obj) = &m.object {
                    match (obj.name.as_str(), method) {
                        ("String", "fromCharCode") | ("String", "fromCodePoint") => {
                            let a = self.args(args, d)?;
                            self.note(Step::FromCharCode);
                            return Some(Val::Str(from_char_codes(&a)?));
                        }
                        ("Buffer", "from") | ("Uint8Array", "from") => {
                            let a = self.args(args, d)?;
                            return match (a.first()?, a.get(1)) {
                                (Val::Str(s), enc) => {
                                    let enc = match enc {
                                        Some(Val::Str(e)) => e.to_ascii_lowercase(),
                                        None => "utf8".into(),
                                        _ => return None,
                                    };
                                    Some(Val::Bytes(match enc.as_str() {
                                        "base64" | "base64url" => {
                                            self.note(Step::Base64);
                                            base64_decode(s)?
                                        }
                                        "hex" => {
                                            self.note(Step::Hex);
                                            hex::decode(s.trim()).ok()?
                                        }
                                        "latin1" | "binary" | "ascii" => {
                                            s.chars().map(|c| c as u32 as u8).collect()
                                        }
                                        "utf8" | "utf-8" => s.as_bytes().to_vec(),
                                        _ => return None,
                                    }))
                                }
                                (v, _) => Some(Val::Bytes(bytes_of(v)?)),
                            };
                        }
                        ("JSON", "parse") => {
                            // Arrays of strings/numbers only.
                            let a = self.args(args, d)?;
                            let Val::Str(s) = a.first()? else { return None };
                            let j: serde_json::Value = serde_json::from_str(s).ok()?;
                            return json_to_val(&j, 0);
                        }
                        _ => {}
                    }
                }
                // `String.fromCharCode.apply(null, arr)`
                if method == "apply"
                    && let Expression::StaticMemberExpression(inner) = &m.object
                    && inner.property.name == "fromCharCode"
                    && matches!(&inner.object, Expression::Identifier(s) if s.name == "String")
                {
                    let a = self.args(args, d)?;
                    let codes = match a.get(1)? {
                        Val::Arr(v) => v.clone(),
                        Val::Bytes(b) => b.iter().map(|x| Val::Num(f64::from(*x))).collect(),
                        _ => return None,
                    };
                    self.note(Step::FromCharCode);
                    return Some(Val::Str(from_char_codes(&codes)?));
                }
                // `new TextDecoder().decode(bytes)`
                if method == "decode"
                    && let Expression::NewExpression(n) = &m.object
                    && matches!(&n.callee, Expression::Identifier(t) if t.name == "TextDecoder")
                {
                    let a = self.args(args, d)?;
                    self.note(Step::TextDecoder);
                    return Some(Val::Str(
                        String::from_utf8_lossy(&bytes_of(a.first()?)?).into_owned(),
                    ));
                }
                let obj = self.eval_d(&m.object, d + 1)?;
                self.method(obj, method, args, d)
            }
            Expression::ParenthesizedExpression(p) => self.call(&p.expression, args, d),
            _ => None,
        }
    }

    fn method(&mut self, obj: Val, method: &str, args: &[Argument<'_>], d: usize) -> Option<Val> {
        let fn_arg = |i: usize| args.get(i).and_then(|a| a.as_expression());
        match (obj, method) {
            (Val::Str(s), "split") => {
                let a = self.args(args, d)?;
                match a.first() {
                    Some(Val::Str(sep)) if sep.is_empty() => Some(Val::Arr(
                        s.chars().map(|c| Val::Str(c.to_string())).collect(),
                    )),
                    Some(Val::Str(sep)) => Some(Val::Arr(
                        s.split(sep.as_str())
                            .map(|p| Val::Str(p.to_string()))
                            .collect(),
                    )),
                    None => Some(Val::Arr(vec![Val::Str(s)])),
                    _ => None,
                }
            }
            (Val::Str(s), "charCodeAt") => {
                let a = self.args(args, d)?;
                let i = a.first().map(|v| v.as_num()).unwrap_or(Some(0.0))? as usize;
                self.note(Step::CharCodeAt);
                Some(Val::Num(f64::from(
                    *s.encode_utf16().collect::<Vec<_>>().get(i)?,
                )))
            }
            (Val::Str(s), "toLowerCase") => Some(Val::Str(s.to_lowercase())),
            (Val::Str(s), "toUpperCase") => Some(Val::Str(s.to_uppercase())),
            (Val::Str(s), "trim") => Some(Val::Str(s.trim().to_string())),
            (Val::Str(s), "toString") => Some(Val::Str(s)),
            (Val::Str(s), "concat") => {
                let mut out = s;
                for a in self.args(args, d)? {
                    out.push_str(&a.to_js_string()?);
                }
                Some(Val::Str(out))
            }
            (Val::Str(s), "replace" | "replaceAll") => {
                let a = self.args(args, d)?;
                let (Val::Str(from), Val::Str(to)) = (a.first()?, a.get(1)?) else {
                    return None;
                };
                Some(Val::Str(if method == "replace" {
                    s.replacen(from.as_str(), to, 1)
                } else {
                    s.replace(from.as_str(), to)
                }))
            }
            (Val::Str(s), "slice" | "substring" | "substr") => {
                let a = self.args(args, d)?;
                let chars: Vec<char> = s.chars().collect();
                let n = chars.len() as i64;
                let norm = |x: f64| -> usize {
                    let x = x as i64;
                    (if x < 0 { (n + x).max(0) } else { x.min(n) }) as usize
                };
                let start = norm(a.first().and_then(Val::as_num).unwrap_or(0.0));
                let end = match (method, a.get(1).and_then(Val::as_num)) {
                    ("substr", Some(len)) => (start + len.max(0.0) as usize).min(n as usize),
                    (_, Some(e)) => norm(e),
                    (_, None) => n as usize,
                };
                Some(Val::Str(
                    chars
                        .get(start..end.max(start))
                        .map(|c| c.iter().collect())
                        .unwrap_or_default(),
                ))
            }
            (Val::Arr(mut a), "reverse") => {
                a.reverse();
                self.note(Step::Reverse);
                Some(Val::Arr(a))
            }
            (Val::Bytes(mut b), "reverse") => {
                b.reverse();
                self.note(Step::Reverse);
                Some(Val::Bytes(b))
            }
            (Val::Arr(a), "join") => {
                let sep = match self.args(args, d)?.first() {
                    Some(Val::Str(s)) => s.clone(),
                    None => ",".into(),
                    _ => return None,
                };
                let mut parts = Vec::with_capacity(a.len());
                for v in &a {
                    parts.push(v.to_js_string()?);
                }
                Some(Val::Str(parts.join(&sep)))
            }
            (Val::Arr(a), "map") => Some(Val::Arr(self.map(a, fn_arg(0)?, d)?)),
            (Val::Arr(a), "concat") => {
                let mut out = a;
                for v in self.args(args, d)? {
                    match v {
                        Val::Arr(x) => out.extend(x),
                        other => out.push(other),
                    }
                }
                Some(Val::Arr(out))
            }
            (Val::Bytes(b), "map") => {
                let items = b.into_iter().map(|x| Val::Num(f64::from(x))).collect();
                let mapped = self.map(items, fn_arg(0)?, d)?;
                Some(Val::Bytes(bytes_of(&Val::Arr(mapped))?))
            }
            (Val::Bytes(b), "toString") => {
                let enc = match self.args(args, d)?.first() {
                    Some(Val::Str(e)) => e.to_ascii_lowercase(),
                    None => "utf8".into(),
                    _ => return None,
                };
                match enc.as_str() {
                    "utf8" | "utf-8" => Some(Val::Str(String::from_utf8_lossy(&b).into_owned())),
                    "latin1" | "binary" | "ascii" => Some(Val::Str(latin1(&b))),
                    "hex" => Some(Val::Str(hex::encode(&b))),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn json_to_val(j: &serde_json::Value, depth: usize) -> Option<Val> {
    if depth > 4 {
        return None;
    }
    Some(match j {
        serde_json::Value::String(s) => Val::Str(s.clone()),
        serde_json::Value::Number(n) => Val::Num(n.as_f64()?),
        serde_json::Value::Bool(b) => Val::Bool(*b),
        serde_json::Value::Array(a) => Val::Arr(
            a.iter()
                .map(|x| json_to_val(x, depth + 1))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

fn param_names<'a, 'b: 'a>(
    pats: impl Iterator<Item = &'a BindingPattern<'b>>,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for p in pats {
        match p {
            BindingPattern::BindingIdentifier(b) => out.push(b.name.to_string()),
            _ => return None,
        }
    }
    Some(out)
}

pub(crate) fn single_return<'a, 'b>(stmts: &'b [Statement<'a>]) -> Option<&'b Expression<'a>> {
    match stmts {
        [Statement::ReturnStatement(r)] => r.argument.as_ref(),
        _ => None,
    }
}

pub(crate) fn arrow_body<'a, 'b>(a: &'b ArrowFunctionExpression<'a>) -> Option<&'b Expression<'a>> {
    match &a.body {
        ArrowFunctionBody::FunctionBody(b) => single_return(&b.statements),
        other => other.as_expression(),
    }
}

pub(crate) fn function_body<'a, 'b>(f: &'b Function<'a>) -> Option<&'b Expression<'a>> {
    single_return(&f.body.as_ref()?.statements)
}
