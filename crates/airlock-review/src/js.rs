//! JavaScript analysis: one parse with oxc, two cheap visits (the first only learns which
//! functions return environment reads), and every detector in the second visit.

use std::collections::{HashMap, HashSet};

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    Argument, ArrowFunctionExpression, AssignmentExpression, AssignmentTarget, BinaryExpression,
    BindingPattern, CallExpression, ConditionalExpression, ExportAllDeclaration,
    ExportFromDeclaration, Expression, Function, IfStatement, ImportDeclaration, ImportExpression,
    NewExpression, ReturnStatement, Statement, StringLiteral, TemplateLiteral, VariableDeclarator,
};
use oxc_ast_visit::{Visit, walk};
use oxc_parser::{ParseOptions, Parser};
use oxc_span::{GetSpan, SourceType, Span};
use oxc_syntax::operator::BinaryOperator;
use oxc_syntax::scope::ScopeFlags;

use crate::collect::{Collector, FileCtx, Origin, escape_invisible, is_printable_text};
use crate::fold::{Folder, Lookup, Step, Val};
use crate::lookalike;
use crate::model::Severity;

/// Environment sources, as bit flags.
pub type Sources = u16;
pub const TIMEZONE: Sources = 1;
pub const LOCALE: Sources = 2;
pub const HOSTNAME: Sources = 4;
pub const USER: Sources = 8;
pub const NETIF: Sources = 16;
pub const MACHINE_ID: Sources = 32;
pub const BASE_URL: Sources = 64;
pub const PROXY: Sources = 128;
/// Sources that identify the machine or its user (not routing configuration).
pub const FINGERPRINT: Sources = TIMEZONE | LOCALE | HOSTNAME | USER | NETIF | MACHINE_ID;

fn source_names(s: Sources) -> String {
    let names = [
        (TIMEZONE, "time zone"),
        (LOCALE, "locale"),
        (HOSTNAME, "host name"),
        (USER, "user name"),
        (NETIF, "network interfaces"),
        (MACHINE_ID, "machine id"),
        (BASE_URL, "*_BASE_URL variable"),
        (PROXY, "proxy variable"),
    ];
    names
        .iter()
        .filter(|(b, _)| s & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn source_capability(s: Sources) -> Option<(&'static str, &'static str)> {
    Some(match s {
        TIMEZONE => (
            "env.timezone",
            "Reads the time zone (Intl resolvedOptions, TZ, getTimezoneOffset)",
        ),
        LOCALE => ("env.locale", "Reads the locale or language"),
        HOSTNAME => ("env.hostname", "Reads the host name"),
        USER => ("env.user", "Reads the user name"),
        NETIF => (
            "env.network_interfaces",
            "Lists network interfaces (addresses, MAC)",
        ),
        MACHINE_ID => ("env.machine_id", "Reads a machine identifier"),
        BASE_URL => (
            "env.base_url",
            "Reads *_BASE_URL variables (API endpoint override)",
        ),
        PROXY => ("env.proxy", "Reads proxy variables"),
        _ => return None,
    })
}

fn env_var_source(name: &str) -> Sources {
    let u = name.to_ascii_uppercase();
    match u.as_str() {
        "TZ" => TIMEZONE,
        "LANG" | "LANGUAGE" | "LC_ALL" | "LC_MESSAGES" | "LC_CTYPE" | "LC_TIME" => LOCALE,
        "USER" | "USERNAME" | "LOGNAME" => USER,
        "HOSTNAME" | "COMPUTERNAME" => HOSTNAME,
        _ if u.ends_with("BASE_URL") => BASE_URL,
        _ if u.ends_with("_PROXY") || u == "PROXY" => PROXY,
        _ => 0,
    }
}

fn is_process_env(e: &Expression<'_>) -> bool {
    matches!(e, Expression::StaticMemberExpression(m) if m.property.name == "env"
        && matches!(&m.object, Expression::Identifier(p) if p.name == "process"))
}

fn is_require_name(n: &str) -> bool {
    n == "require" || n.ends_with("_require") || n.ends_with("Require") || n == "__require"
}

/// Capabilities of well-known modules (Node built-ins and common clients).
fn module_capability(m: &str) -> Option<(&'static str, &'static str)> {
    let m = m.strip_prefix("node:").unwrap_or(m);
    let base = m.split('/').next().unwrap_or(m);
    Some(match base {
        "child_process" => ("process.exec", "Runs other programs (child_process)"),
        "http" | "https" | "http2" => ("network.http", "HTTP via node:http/https"),
        "net" | "tls" | "dgram" => ("network.socket", "Raw TCP/UDP/TLS sockets"),
        "dns" => ("network.dns", "DNS lookups"),
        "vm" => ("code.vm", "Runs code with node:vm"),
        "ws" | "isomorphic-ws" => ("network.websocket", "WebSocket connections"),
        "undici" | "node-fetch" | "axios" | "got" | "cross-fetch" | "ky" | "superagent"
        | "request" => ("network.http_client", "HTTP client library"),
        "bindings" | "node-gyp-build" | "node-addon-api" => ("native.addon", "Loads native addons"),
        _ if m.ends_with(".node") => ("native.addon", "Loads native addons"),
        _ => return None,
    })
}

const OUTBOUND: &[&str] = &[
    "fetch",
    "request",
    "post",
    "put",
    "patch",
    "sendBeacon",
    "send",
    "axios",
    "got",
];

/// Distance within which a credential read and a network send count as one chain.
pub const CHAIN_WINDOW: usize = 4096;

struct Frame {
    id: u32,
    name: Option<String>,
    span: (usize, usize),
    /// String literals this function returns, and whether it returns anything else.
    ret_strs: Vec<String>,
    ret_other: bool,
    returns: Sources,
    cred: Option<(usize, usize)>,
    net: Option<(usize, usize)>,
}

/// Pass 1 learns; pass 2 reports.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Pass {
    Learn,
    Report,
}

struct Analyzer<'c, 's> {
    col: &'c mut Collector,
    ctx: &'s FileCtx<'s>,
    pass: Pass,
    frames: Vec<Frame>,
    next_frame: u32,
    pending_name: Option<String>,
    vars: HashMap<(u32, String), Sources>,
    consts: HashMap<(u32, String), Val>,
    fns: HashMap<(u32, String), Sources>,
    /// Functions that return one of several look-alike strings: name → differences.
    selectors: HashMap<(u32, String), String>,
    assigned: HashSet<String>,
    fold_depth: u32,
    child_process: bool,
    decoded_here: u64,
    decoded_first: Vec<(usize, usize)>,
    module_cred: Option<(usize, usize)>,
    module_net: Option<(usize, usize)>,
}

struct ScopeLookup<'x> {
    consts: &'x HashMap<(u32, String), Val>,
    frames: Vec<u32>,
}

impl Lookup for ScopeLookup<'_> {
    fn lookup(&self, name: &str) -> Option<Val> {
        let key = name.to_string();
        self.frames
            .iter()
            .rev()
            .chain(std::iter::once(&0))
            .find_map(|f| self.consts.get(&(*f, key.clone())).cloned())
    }
}

/// Sums the environment sources in an expression (not entering nested functions).
struct TaintWalk<'x, 'c, 's> {
    an: &'x Analyzer<'c, 's>,
    acc: Sources,
    budget: u32,
}

impl<'a> Visit<'a> for TaintWalk<'_, '_, '_> {
    fn visit_expression(&mut self, e: &Expression<'a>) {
        if self.budget == 0 {
            return;
        }
        self.budget -= 1;
        self.acc |= self.an.direct_source(e);
        walk::walk_expression(self, e);
    }
    fn visit_function(&mut self, _f: &Function<'a>, _flags: ScopeFlags) {}
    fn visit_arrow_function_expression(&mut self, _a: &ArrowFunctionExpression<'a>) {}
}

impl<'c, 's> Analyzer<'c, 's> {
    fn top(&self) -> u32 {
        self.frames.last().map_or(0, |f| f.id)
    }

    fn lookup_scoped<'m, T>(
        &self,
        map: &'m HashMap<(u32, String), T>,
        name: &str,
    ) -> Option<&'m T> {
        if map.is_empty() {
            return None;
        }
        let key = name.to_string();
        for f in self
            .frames
            .iter()
            .rev()
            .map(|f| f.id)
            .chain(std::iter::once(0))
        {
            if let Some(v) = map.get(&(f, key.clone())) {
                return Some(v);
            }
        }
        None
    }

    /// Environment sources read by this node itself.
    fn direct_source(&self, e: &Expression<'_>) -> Sources {
        match e {
            Expression::Identifier(id) => self
                .lookup_scoped(&self.vars, id.name.as_str())
                .copied()
                .unwrap_or(0),
            Expression::StaticMemberExpression(m) => {
                let p = m.property.name.as_str();
                if is_process_env(&m.object) {
                    return env_var_source(p);
                }
                if (p == "language" || p == "languages")
                    && matches!(&m.object, Expression::Identifier(n) if n.name == "navigator")
                {
                    return LOCALE;
                }
                0
            }
            Expression::ComputedMemberExpression(m) => {
                if is_process_env(&m.object)
                    && let Expression::StringLiteral(s) = &m.expression
                {
                    return env_var_source(s.value.as_str());
                }
                0
            }
            Expression::CallExpression(c) => match &c.callee {
                Expression::StaticMemberExpression(m) => match m.property.name.as_str() {
                    "resolvedOptions" => TIMEZONE | LOCALE,
                    "getTimezoneOffset" => TIMEZONE,
                    "hostname" if c.arguments.is_empty() => HOSTNAME,
                    "userInfo" => USER,
                    "networkInterfaces" => NETIF,
                    "machineIdSync" | "machineId" => MACHINE_ID,
                    _ => 0,
                },
                Expression::Identifier(id) => match id.name.as_str() {
                    "machineIdSync" | "machineId" => MACHINE_ID,
                    n => self.lookup_scoped(&self.fns, n).copied().unwrap_or(0),
                },
                _ => 0,
            },
            _ => 0,
        }
    }

    fn taint_of(&self, e: &Expression<'_>) -> Sources {
        let mut t = TaintWalk {
            an: self,
            acc: 0,
            budget: 4000,
        };
        t.visit_expression(e);
        t.acc
    }

    fn fold(&self, e: &Expression<'_>) -> Option<(Val, Vec<Step>, Vec<i64>)> {
        let lk = ScopeLookup {
            consts: &self.consts,
            frames: self.frames.iter().map(|f| f.id).collect(),
        };
        let mut f = Folder::new(&lk);
        let v = f.eval(e)?;
        Some((v, f.steps, f.xor_keys))
    }

    fn fold_str(&self, e: &Expression<'_>) -> Option<String> {
        match e {
            Expression::StringLiteral(s) => Some(s.value.to_string()),
            _ => match self.fold(e)?.0 {
                Val::Str(s) => Some(s),
                _ => None,
            },
        }
    }

    fn push_frame(&mut self, span: Span) {
        self.next_frame += 1;
        let name = self.pending_name.take();
        self.frames.push(Frame {
            id: self.next_frame,
            name,
            span: (span.start as usize, span.end as usize),
            ret_strs: Vec::new(),
            ret_other: false,
            returns: 0,
            cred: None,
            net: None,
        });
    }

    /// A function whose every return is one of several strings that differ only by look-alike
    /// characters (e.g. `'` / U+2019 / U+02BC): a selector for a covert channel.
    fn selector_diffs(f: &Frame) -> Option<String> {
        if f.ret_other || f.ret_strs.len() < 2 {
            return None;
        }
        let mut uniq: Vec<&String> = Vec::new();
        for r in &f.ret_strs {
            if !uniq.contains(&r) {
                uniq.push(r);
            }
        }
        if uniq.len() < 2 {
            return None;
        }
        let mut shown = Vec::new();
        for w in uniq.windows(2) {
            let d = lookalike::differences(w[0], w[1])?;
            for (x, y) in d {
                shown.push(format!("U+{:04X} vs U+{:04X}", x as u32, y as u32));
            }
        }
        shown.dedup();
        Some(shown.into_iter().take(8).collect::<Vec<_>>().join(", "))
    }

    fn pop_frame(&mut self) {
        let Some(f) = self.frames.pop() else { return };
        if let Some(diffs) = Self::selector_diffs(&f) {
            let parent = self.top();
            let name = f.name.clone().unwrap_or_default();
            if self.pass == Pass::Report {
                let ev = self.col.evidence(self.ctx, f.span.0, f.span.1);
                self.col.finding(
                    "hidden_text.lookalike_branch",
                    Severity::Medium,
                    "Function returns look-alike characters",
                    format!(
                        "function `{name}` returns one of {} strings that differ only by look-alike characters ({diffs})",
                        f.ret_strs.len()
                    ),
                    vec![ev],
                );
            }
            if !name.is_empty() {
                self.selectors.insert((parent, name), diffs);
            }
        }
        if f.returns != 0
            && let Some(n) = &f.name
        {
            let parent = self.top();
            *self.fns.entry((parent, n.clone())).or_insert(0) |= f.returns;
        }
        self.check_cred_chain(&f);
    }

    fn check_cred_chain(&mut self, f: &Frame) {
        if self.pass != Pass::Report {
            return;
        }
        if let (Some(c), Some(n)) = (f.cred, f.net)
            && c.0.abs_diff(n.0) <= CHAIN_WINDOW
        {
            let evs = vec![
                self.col.evidence(self.ctx, c.0, c.1),
                self.col.evidence(self.ctx, n.0, n.1),
            ];
            self.col.finding(
                "chain.credential_to_network",
                Severity::High,
                "Credential-store access next to a network send",
                "the same function names a credential store (SSH keys, cloud credentials, .netrc, keychain, browser profile) and sends a network request".into(),
                evs,
            );
        }
    }

    fn cap(&mut self, id: &str, desc: &str, span: Span) {
        if self.pass == Pass::Report {
            self.col
                .cap(id, desc, self.ctx, span.start as usize, span.end as usize);
        }
    }

    fn module(&mut self, m: &str, span: Span) {
        if self.pass != Pass::Report {
            return;
        }
        let m = m.strip_prefix("node:").unwrap_or(m);
        if m == "child_process" {
            self.child_process = true;
        }
        if let Some((id, d)) = module_capability(m) {
            self.cap(id, d, span);
        }
        let caps: Vec<(String, String)> = self
            .col
            .rules
            .module_capabilities(m)
            .into_iter()
            .map(|c| {
                (
                    c.to_string(),
                    self.col
                        .rules
                        .descriptions
                        .get(c)
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        for (c, d) in caps {
            self.cap(&c, &d, span);
        }
    }

    fn comparison(&mut self, tainted: Sources, literal: &str, span: Span) {
        if self.pass != Pass::Report || tainted == 0 || literal.is_empty() || literal == "undefined"
        {
            return;
        }
        let routing_only = tainted & FINGERPRINT == 0;
        if routing_only && !(literal.contains('.') || literal.contains('/')) {
            return;
        }
        let ev = self
            .col
            .evidence(self.ctx, span.start as usize, span.end as usize);
        self.col.finding(
            "fingerprint.env_comparison",
            Severity::Medium,
            "Environment value compared with a specific value",
            format!(
                "{} compared with \"{}\"",
                source_names(tainted),
                escape_invisible(&literal.chars().take(120).collect::<String>())
            ),
            vec![ev],
        );
    }

    /// A conditional choosing between two strings that differ only by look-alike characters.
    fn lookalike_choice(&mut self, test: &Expression<'_>, a: &str, b: &str, span: Span) {
        if self.pass != Pass::Report {
            return;
        }
        let Some(diffs) = lookalike::differences(a, b) else {
            return;
        };
        let t = self.taint_of(test);
        let shown = diffs
            .iter()
            .take(6)
            .map(|(x, y)| format!("U+{:04X} vs U+{:04X}", *x as u32, *y as u32))
            .collect::<Vec<_>>()
            .join(", ");
        let ev = self
            .col
            .evidence(self.ctx, span.start as usize, span.end as usize);
        if t != 0 {
            self.col.finding(
                "chain.env_to_lookalike_text",
                Severity::Critical,
                "Covert channel: look-alike characters chosen by an environment read",
                format!(
                    "a condition on the {} picks between strings that differ only by look-alike characters ({shown}); text produced this way silently marks output by environment",
                    source_names(t)
                ),
                vec![ev],
            );
        } else {
            self.col.finding(
                "hidden_text.lookalike_branch",
                Severity::Medium,
                "Conditional choice between look-alike characters",
                format!("the branches differ only by look-alike characters ({shown})"),
                vec![ev],
            );
        }
    }

    fn record_decoded(&mut self, v: &Val, steps: &[Step], keys: &[i64], span: Span) {
        let text = match v {
            Val::Str(s) => s.clone(),
            Val::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => s.to_string(),
                Err(_) => return,
            },
            Val::Arr(a) if a.iter().all(|x| matches!(x, Val::Str(_))) => a
                .iter()
                .filter_map(|x| x.to_js_string())
                .collect::<Vec<_>>()
                .join(","),
            _ => return,
        };
        if !is_printable_text(&text) {
            return;
        }
        let mut method = steps
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" → ");
        if !keys.is_empty() {
            let k = keys
                .iter()
                .map(|k| format!("0x{k:x}"))
                .collect::<Vec<_>>()
                .join(",");
            method = method.replace("xor", &format!("xor({k})"));
        }
        let strong = steps.len() >= 2
            || steps.iter().any(|s| {
                matches!(
                    s,
                    Step::Xor
                        | Step::FromCharCode
                        | Step::Reverse
                        | Step::Arithmetic
                        | Step::CharCodeAt
                )
            });
        self.decoded_here += 1;
        if self.decoded_first.len() < 5 {
            self.decoded_first
                .push((span.start as usize, span.end as usize));
        }
        self.col.on_decoded(
            self.ctx,
            &text,
            &method,
            strong,
            span.start as usize,
            span.end as usize,
        );
    }

    fn branch_string(&self, s: &Statement<'_>) -> Option<String> {
        match s {
            Statement::ReturnStatement(r) => self.fold_str(r.argument.as_ref()?),
            Statement::ExpressionStatement(e) => match &e.expression {
                Expression::AssignmentExpression(a) => self.fold_str(&a.right),
                _ => None,
            },
            Statement::BlockStatement(b) if b.body.len() == 1 => self.branch_string(&b.body[0]),
            _ => None,
        }
    }
}

fn binding_name(p: &BindingPattern<'_>) -> Option<String> {
    match p {
        BindingPattern::BindingIdentifier(b) => Some(b.name.to_string()),
        _ => None,
    }
}

fn foldable_root(e: &Expression<'_>) -> bool {
    match e {
        Expression::CallExpression(_) | Expression::NewExpression(_) => true,
        Expression::BinaryExpression(b) => matches!(
            b.operator,
            BinaryOperator::Addition | BinaryOperator::BitwiseXOR
        ),
        _ => false,
    }
}

fn callee_name<'b>(callee: &'b Expression<'_>) -> (Option<&'b str>, Option<&'b str>) {
    match callee {
        Expression::Identifier(i) => (None, Some(i.name.as_str())),
        Expression::StaticMemberExpression(m) => {
            let obj = match &m.object {
                Expression::Identifier(o) => Some(o.name.as_str()),
                Expression::StaticMemberExpression(o) => Some(o.property.name.as_str()),
                _ => None,
            };
            (obj, Some(m.property.name.as_str()))
        }
        Expression::ParenthesizedExpression(p) => callee_name(&p.expression),
        _ => (None, None),
    }
}

impl<'a> Visit<'a> for Analyzer<'_, '_> {
    fn visit_function(&mut self, f: &Function<'a>, flags: ScopeFlags) {
        if let Some(id) = &f.id {
            self.pending_name = Some(id.name.to_string());
        }
        self.push_frame(f.span);
        walk::walk_function(self, f, flags);
        self.pop_frame();
    }

    fn visit_arrow_function_expression(&mut self, a: &ArrowFunctionExpression<'a>) {
        self.push_frame(a.span);
        if let Some(e) = a.body.as_expression() {
            let t = self.taint_of(e);
            if let Some(f) = self.frames.last_mut() {
                f.returns |= t;
                f.ret_other = true;
            }
        }
        walk::walk_arrow_function_expression(self, a);
        self.pop_frame();
    }

    fn visit_variable_declarator(&mut self, d: &VariableDeclarator<'a>) {
        if let (Some(name), Some(init)) = (binding_name(&d.id), &d.init) {
            match init {
                Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_) => {
                    self.pending_name = Some(name);
                }
                _ => {
                    let t = self.taint_of(init);
                    if t != 0 {
                        *self.vars.entry((self.top(), name.clone())).or_insert(0) |= t;
                    }
                    if self.pass == Pass::Report
                        && !self.assigned.contains(&name)
                        && matches!(
                            init,
                            Expression::StringLiteral(_)
                                | Expression::NumericLiteral(_)
                                | Expression::ArrayExpression(_)
                                | Expression::TemplateLiteral(_)
                                | Expression::BinaryExpression(_)
                                | Expression::CallExpression(_)
                                | Expression::UnaryExpression(_)
                        )
                        && let Some((v, _, _)) = self.fold(init)
                    {
                        self.consts.insert((self.top(), name), v);
                    }
                }
            }
        }
        walk::walk_variable_declarator(self, d);
    }

    fn visit_assignment_expression(&mut self, a: &AssignmentExpression<'a>) {
        if let AssignmentTarget::AssignmentTargetIdentifier(id) = &a.left {
            if self.pass == Pass::Learn {
                self.assigned.insert(id.name.to_string());
            }
            let t = self.taint_of(&a.right);
            if t != 0 {
                *self
                    .vars
                    .entry((self.top(), id.name.to_string()))
                    .or_insert(0) |= t;
            }
        }
        walk::walk_assignment_expression(self, a);
    }

    fn visit_return_statement(&mut self, r: &ReturnStatement<'a>) {
        if let Some(arg) = &r.argument {
            let t = self.taint_of(arg);
            if let Some(f) = self.frames.last_mut() {
                f.returns |= t;
                match arg {
                    Expression::StringLiteral(s) if f.ret_strs.len() < 16 => {
                        f.ret_strs.push(s.value.to_string())
                    }
                    _ => f.ret_other = true,
                }
            }
        } else if let Some(f) = self.frames.last_mut() {
            f.ret_other = true;
        }
        walk::walk_return_statement(self, r);
    }

    fn visit_expression(&mut self, e: &Expression<'a>) {
        if self.pass == Pass::Report {
            if !matches!(e, Expression::Identifier(_)) {
                let s = match e {
                    Expression::CallExpression(c)
                        if matches!(&c.callee, Expression::Identifier(_)) =>
                    {
                        // A call to a function that returns an environment read is a flow, not a read.
                        let (_, n) = callee_name(&c.callee);
                        if matches!(n, Some("machineIdSync" | "machineId")) {
                            MACHINE_ID
                        } else {
                            0
                        }
                    }
                    _ => self.direct_source(e),
                };
                let mut bit = 1;
                while bit <= PROXY {
                    if s & bit != 0
                        && let Some((id, d)) = source_capability(bit)
                    {
                        self.cap(id, d, e.span());
                    }
                    bit <<= 1;
                }
            }
            if self.fold_depth == 0
                && foldable_root(e)
                && let Some((v, steps, keys)) = self.fold(e)
            {
                {
                    if !steps.is_empty() {
                        self.record_decoded(&v, &steps, &keys, e.span());
                    } else if let Val::Str(s) = &v
                        && s.contains("://")
                    {
                        let sp = e.span();
                        self.col.on_string(
                            self.ctx,
                            s,
                            sp.start as usize,
                            sp.end as usize,
                            Origin::Extracted,
                        );
                    }
                    self.fold_depth += 1;
                    let was = std::mem::replace(&mut self.col.in_fold, true);
                    walk::walk_expression(self, e);
                    self.col.in_fold = was;
                    self.fold_depth -= 1;
                    return;
                }
            }
        }
        walk::walk_expression(self, e);
    }

    fn visit_string_literal(&mut self, s: &StringLiteral<'a>) {
        if self.pass == Pass::Report {
            self.col.stats.string_literals += 1;
            let facts = self.col.on_string(
                self.ctx,
                s.value.as_str(),
                s.span.start as usize,
                s.span.end as usize,
                Origin::Literal,
            );
            if facts.credential
                && let Some(f) = self.frames.last_mut()
            {
                f.cred
                    .get_or_insert((s.span.start as usize, s.span.end as usize));
            } else if facts.credential {
                self.module_frame_cred((s.span.start as usize, s.span.end as usize));
            }
        }
    }

    fn visit_template_literal(&mut self, t: &TemplateLiteral<'a>) {
        if self.pass == Pass::Report {
            for q in &t.quasis {
                if let Some(c) = &q.value.cooked {
                    self.col.stats.string_literals += 1;
                    let facts = self.col.on_string(
                        self.ctx,
                        c.as_str(),
                        q.span.start as usize,
                        q.span.end as usize,
                        Origin::Literal,
                    );
                    if facts.credential
                        && let Some(f) = self.frames.last_mut()
                    {
                        f.cred
                            .get_or_insert((q.span.start as usize, q.span.end as usize));
                    }
                }
            }
        }
        walk::walk_template_literal(self, t);
    }

    fn visit_call_expression(&mut self, c: &CallExpression<'a>) {
        if self.pass == Pass::Report {
            let (obj, name) = callee_name(&c.callee);
            let span = c.span;
            match (obj, name) {
                (None, Some("fetch")) | (Some("globalThis" | "window" | "self"), Some("fetch")) => {
                    self.cap("network.fetch", "HTTP requests with fetch", span)
                }
                (None, Some("eval")) => self.cap("code.eval", "Dynamic code: eval", span),
                (None, Some("Function")) => self.cap(
                    "code.function_constructor",
                    "Dynamic code: Function constructor",
                    span,
                ),
                (None, Some(n)) if is_require_name(n) => match c.arguments.first() {
                    Some(Argument::StringLiteral(s)) => self.module(s.value.as_str(), span),
                    Some(_) if n == "require" => self.cap(
                        "code.dynamic_require",
                        "require() of a computed module name",
                        span,
                    ),
                    _ => {}
                },
                (Some("Bun"), Some("spawn" | "spawnSync" | "$"))
                | (Some("Deno"), Some("run" | "Command")) => {
                    self.cap("process.exec", "Runs other programs", span)
                }
                (
                    None,
                    Some(
                        "execa" | "execaSync" | "spawn" | "execSync" | "spawnSync" | "execFileSync",
                    ),
                ) if self.child_process => {
                    self.cap("process.exec", "Runs other programs (child_process)", span)
                }
                (
                    Some(_),
                    Some(
                        "exec" | "execSync" | "execFile" | "execFileSync" | "spawn" | "spawnSync"
                        | "fork",
                    ),
                ) if self.child_process => {
                    self.cap("process.exec", "Runs other programs (child_process)", span)
                }
                (
                    _,
                    Some(
                        "runInNewContext" | "runInThisContext" | "runInContext" | "compileFunction",
                    ),
                ) => self.cap("code.vm", "Runs code with node:vm", span),
                (_, Some("sendBeacon")) => self.cap("network.beacon", "navigator.sendBeacon", span),
                (Some("process"), Some("dlopen")) => {
                    self.cap("native.addon", "Loads native addons", span)
                }
                _ => {}
            }
            // A look-alike selector called with environment-derived arguments.
            if let (None, Some(n)) = (obj, name)
                && let Some(diffs) = self.lookup_scoped(&self.selectors, n).cloned()
            {
                let mut t = 0;
                for a in &c.arguments {
                    if let Some(e) = a.as_expression() {
                        t |= self.taint_of(e);
                    }
                }
                if t != 0 {
                    let ev = self
                        .col
                        .evidence(self.ctx, span.start as usize, span.end as usize);
                    self.col.finding(
                        "chain.env_to_lookalike_text",
                        Severity::Critical,
                        "Covert channel: look-alike characters chosen by an environment read",
                        format!(
                            "`{n}(...)` picks between look-alike characters ({diffs}) with arguments derived from the {}; text produced this way silently marks output by environment",
                            source_names(t)
                        ),
                        vec![ev],
                    );
                }
            }
            // Outbound request: does a fingerprint flow into it?
            if let Some(n) = name
                && OUTBOUND.contains(&n)
                && !c.arguments.is_empty()
            {
                let mut t = 0;
                for a in &c.arguments {
                    if let Some(e) = a.as_expression() {
                        t |= self.taint_of(e);
                    }
                }
                let here = (span.start as usize, span.end as usize);
                if let Some(f) = self.frames.last_mut() {
                    f.net.get_or_insert(here);
                } else {
                    self.module_frame_net(here);
                }
                if t & FINGERPRINT != 0 {
                    let ev = self.col.evidence(self.ctx, here.0, here.1);
                    self.col.finding(
                        "chain.fingerprint_to_network",
                        Severity::High,
                        "Environment fingerprint sent over the network",
                        format!(
                            "the {} flows into a `{n}(...)` call",
                            source_names(t & FINGERPRINT)
                        ),
                        vec![ev],
                    );
                }
            }
            // tz.startsWith("Asia/"), ["Asia/Shanghai"].includes(tz)
            if let (Expression::StaticMemberExpression(m), Some(n)) = (&c.callee, name)
                && matches!(
                    n,
                    "includes" | "startsWith" | "endsWith" | "indexOf" | "has" | "test"
                )
                && let Some(arg) = c.arguments.first().and_then(|a| a.as_expression())
            {
                let to = self.taint_of(&m.object);
                let ta = self.taint_of(arg);
                if to != 0 && ta == 0 {
                    if let Some(s) = self.fold_str(arg) {
                        self.comparison(to, &s, span);
                    }
                } else if ta != 0
                    && to == 0
                    && let Some((v, _, _)) = self.fold(&m.object)
                {
                    {
                        let s = match v {
                            Val::Arr(a) => a
                                .iter()
                                .filter_map(|x| x.to_js_string())
                                .collect::<Vec<_>>()
                                .join("\", \""),
                            other => other.to_js_string().unwrap_or_default(),
                        };
                        self.comparison(ta, &s, span);
                    }
                }
            }
        }
        walk::walk_call_expression(self, c);
    }

    fn visit_new_expression(&mut self, n: &NewExpression<'a>) {
        if self.pass == Pass::Report
            && let Expression::Identifier(id) = &n.callee
        {
            match id.name.as_str() {
                "WebSocket" => self.cap("network.websocket", "WebSocket connections", n.span),
                "XMLHttpRequest" => self.cap("network.xhr", "XMLHttpRequest", n.span),
                "EventSource" => {
                    self.cap("network.sse", "Server-sent events (EventSource)", n.span)
                }
                "Function" => self.cap(
                    "code.function_constructor",
                    "Dynamic code: Function constructor",
                    n.span,
                ),
                _ => {}
            }
            if matches!(id.name.as_str(), "WebSocket" | "Request" | "EventSource") {
                let mut t = 0;
                for a in &n.arguments {
                    if let Some(e) = a.as_expression() {
                        t |= self.taint_of(e);
                    }
                }
                if t & FINGERPRINT != 0 {
                    let ev =
                        self.col
                            .evidence(self.ctx, n.span.start as usize, n.span.end as usize);
                    self.col.finding(
                        "chain.fingerprint_to_network",
                        Severity::High,
                        "Environment fingerprint sent over the network",
                        format!(
                            "the {} flows into `new {}(...)`",
                            source_names(t & FINGERPRINT),
                            id.name
                        ),
                        vec![ev],
                    );
                }
            }
        }
        walk::walk_new_expression(self, n);
    }

    fn visit_import_declaration(&mut self, d: &ImportDeclaration<'a>) {
        self.module(d.source.value.as_str(), d.span);
        walk::walk_import_declaration(self, d);
    }

    fn visit_export_from_declaration(&mut self, d: &ExportFromDeclaration<'a>) {
        self.module(d.source.value.as_str(), d.span);
        walk::walk_export_from_declaration(self, d);
    }

    fn visit_export_all_declaration(&mut self, d: &ExportAllDeclaration<'a>) {
        self.module(d.source.value.as_str(), d.span);
        walk::walk_export_all_declaration(self, d);
    }

    fn visit_import_expression(&mut self, i: &ImportExpression<'a>) {
        if let Expression::StringLiteral(s) = &i.source {
            self.module(s.value.as_str(), i.span);
        } else {
            self.cap(
                "code.dynamic_import",
                "import() of a computed module",
                i.span,
            );
        }
        walk::walk_import_expression(self, i);
    }

    fn visit_binary_expression(&mut self, b: &BinaryExpression<'a>) {
        if self.pass == Pass::Report
            && matches!(
                b.operator,
                BinaryOperator::StrictEquality
                    | BinaryOperator::Equality
                    | BinaryOperator::StrictInequality
                    | BinaryOperator::Inequality
            )
        {
            let (tl, tr) = (self.taint_of(&b.left), self.taint_of(&b.right));
            if tl != 0 && tr == 0 {
                if let Some(s) = self.fold_str(&b.right) {
                    self.comparison(tl, &s, b.span);
                }
            } else if tr != 0
                && tl == 0
                && let Some(s) = self.fold_str(&b.left)
            {
                self.comparison(tr, &s, b.span);
            }
        }
        walk::walk_binary_expression(self, b);
    }

    fn visit_conditional_expression(&mut self, c: &ConditionalExpression<'a>) {
        if self.pass == Pass::Report
            && let (Some(a), Some(b)) = (self.fold_str(&c.consequent), self.fold_str(&c.alternate))
        {
            self.lookalike_choice(&c.test, &a, &b, c.span);
        }
        walk::walk_conditional_expression(self, c);
    }

    fn visit_if_statement(&mut self, s: &IfStatement<'a>) {
        if self.pass == Pass::Report
            && let Some(alt) = &s.alternate
            && let (Some(a), Some(b)) = (self.branch_string(&s.consequent), self.branch_string(alt))
        {
            self.lookalike_choice(&s.test, &a, &b, s.span);
        }
        walk::walk_if_statement(self, s);
    }
}

impl Analyzer<'_, '_> {
    // Module-level code has no frame: keep its chain state in a pseudo-frame.
    fn module_frame_cred(&mut self, at: (usize, usize)) {
        self.module_cred.get_or_insert(at);
    }
    fn module_frame_net(&mut self, at: (usize, usize)) {
        self.module_net.get_or_insert(at);
    }
}

/// The oxc source type for a file name.
pub fn source_type_for(name: &str) -> SourceType {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".mjs") {
        SourceType::mjs()
    } else if lower.ends_with(".cjs") {
        SourceType::cjs()
    } else if lower.ends_with(".ts") || lower.ends_with(".mts") || lower.ends_with(".cts") {
        SourceType::ts()
    } else if lower.ends_with(".tsx") {
        SourceType::tsx()
    } else {
        SourceType::unambiguous().with_jsx(true)
    }
}

/// Analyse one JavaScript/TypeScript file.
pub fn analyse(col: &mut Collector, name: String, text: &str, max_parse_bytes: u64) {
    let ctx = FileCtx::new(name, text);
    col.stats.bytes_analysed += text.len() as u64;
    scan_source(col, &ctx);
    if text.len() as u64 > max_parse_bytes {
        col.notes.push(format!(
            "{}: {} bytes is over the parse cap; strings extracted instead",
            ctx.name,
            text.len()
        ));
        extract_strings(col, &ctx);
        return;
    }
    let allocator = Allocator::default();
    let opts = ParseOptions {
        allow_return_outside_function: true,
        preserve_parens: false,
        ..ParseOptions::default()
    };
    let st = source_type_for(&ctx.name);
    let mut ret = Parser::new(&allocator, text, st).with_options(opts).parse();
    if ret.panicked && st.is_javascript() && !st.is_typescript() {
        ret = Parser::new(&allocator, text, SourceType::cjs().with_jsx(false))
            .with_options(opts)
            .parse();
    }
    if ret.panicked {
        col.stats.js_parse_failures += 1;
        let first = ret
            .diagnostics
            .first()
            .map(|d| d.to_string())
            .unwrap_or_default();
        col.notes.push(format!(
            "{}: could not be parsed as JavaScript ({}); strings extracted instead",
            ctx.name,
            first.chars().take(160).collect::<String>()
        ));
        extract_strings(col, &ctx);
        return;
    }
    col.stats.js_files_parsed += 1;
    if !ret.diagnostics.is_empty() {
        col.notes.push(format!(
            "{}: {} recoverable syntax error(s); analysed what parsed",
            ctx.name,
            ret.diagnostics.len()
        ));
    }
    let mut an = Analyzer {
        col,
        ctx: &ctx,
        pass: Pass::Learn,
        frames: Vec::new(),
        next_frame: 0,
        pending_name: None,
        vars: HashMap::new(),
        consts: HashMap::new(),
        fns: HashMap::new(),
        selectors: HashMap::new(),
        assigned: HashSet::new(),
        fold_depth: 0,
        child_process: false,
        decoded_here: 0,
        decoded_first: Vec::new(),
        module_cred: None,
        module_net: None,
    };
    an.visit_program(&ret.program);
    // A second learning visit lets taint reach functions defined before their sources.
    an.next_frame = 0;
    an.frames.clear();
    an.visit_program(&ret.program);
    an.pass = Pass::Report;
    an.next_frame = 0;
    an.frames.clear();
    an.vars.clear();
    an.visit_program(&ret.program);
    let module = Frame {
        id: 0,
        name: None,
        span: (0, 0),
        ret_strs: Vec::new(),
        ret_other: true,
        returns: 0,
        cred: an.module_cred,
        net: an.module_net,
    };
    an.check_cred_chain(&module);
    if an.decoded_here > 0 {
        let n = an.decoded_here;
        let firsts = an.decoded_first.clone();
        let evs = firsts
            .iter()
            .map(|(s, e)| an.col.evidence(&ctx, *s, *e))
            .collect();
        an.col.finding(
            "obfuscation.decoded_strings",
            Severity::Low,
            "Obfuscated strings decoded",
            format!("{n} constant expression(s) decode to text (listed under decoded strings)"),
            evs,
        );
    }
}

/// Run the engine on a file's raw text (invisible characters, secrets).
pub fn scan_source(col: &mut Collector, ctx: &FileCtx<'_>) {
    let Some(s) = &col.scanner else { return };
    let hits = s.scan(ctx.text);
    for h in hits {
        let ev = col.evidence(ctx, h.start, h.end);
        col.engine_finding(&h, ev, false);
    }
}

/// Fallback: quoted strings found by a pattern, for text that does not parse.
pub fn extract_strings(col: &mut Collector, ctx: &FileCtx<'_>) {
    static Q: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#""((?:[^"\\\n]|\\.){3,})"|'((?:[^'\\\n]|\\.){3,})'|`((?:[^`\\]|\\.){3,})`"#,
        )
        .expect("static regex")
    });
    for c in Q.captures_iter(ctx.text) {
        if let Some(m) = c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3))
            && m.len() <= 64 * 1024
        {
            col.stats.string_literals += 1;
            col.on_string(ctx, m.as_str(), m.start(), m.end(), Origin::Literal);
        }
    }
}

/// Printable-strings text (from a binary): URLs, hosts and markers per line.
pub fn analyse_strings(col: &mut Collector, name: String, text: &str) {
    let ctx = FileCtx::new(name, text);
    col.stats.bytes_analysed += text.len() as u64;
    scan_source(col, &ctx);
    let mut at = 0;
    for line in text.split('\n') {
        col.on_string(&ctx, line, at, at + line.len(), Origin::Extracted);
        at += line.len() + 1;
    }
}
