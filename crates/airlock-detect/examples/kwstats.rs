use std::collections::HashMap;
fn main() {
    let engine = airlock_detect::Engine::builtin().unwrap();
    let mut kws: Vec<String> = engine.rules().iter().flat_map(|r| r.keywords.iter().map(|k| k.to_ascii_lowercase())).collect();
    kws.sort(); kws.dedup();
    let ac = aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&kws).unwrap();
    let src = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let mut c: HashMap<usize, usize> = HashMap::new();
    for m in ac.find_overlapping_iter(&src) { *c.entry(m.pattern().as_usize()).or_default() += 1; }
    let mut v: Vec<_> = c.into_iter().collect(); v.sort_by_key(|x| std::cmp::Reverse(x.1));
    for (p, n) in v.iter().take(25) { print!("{}={} ", kws[*p], n); }
    println!();
    let mut r: HashMap<String, usize> = HashMap::new();
    for f in engine.scan_bytes(&src) { *r.entry(f.rule_id.to_string()).or_default() += 1; }
    let mut v: Vec<_> = r.into_iter().collect(); v.sort_by_key(|x| std::cmp::Reverse(x.1));
    println!("{:?}", v);
}
