//! Path templates (`/patients/{patient}/records/**`) and the trie that finds, for a canonical request path,
//! every rule whose template matches it — in time proportional to the path, not to the number of rules.

use rustc_hash::FxHashMap;
use std::fmt;
use std::ops::ControlFlow;

/// Most segments in a template; deeper request paths are still matched by a template ending in `**`.
pub const MAX_TEMPLATE_SEGMENTS: usize = 32;
/// Most `{name}` parameters in one template.
pub const MAX_PARAMS: usize = 8;

/// A validated path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: Box<str>,
    segments: Vec<Segment>,
    /// Ends in `/**`: matches its own path and everything below it.
    subtree: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

impl Template {
    /// Parses a template. Literal segments must already be canonical (what request canonicalisation
    /// produces), so that a template can never be written in a form no request takes.
    pub fn parse(text: &str) -> Result<Template, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("must start with '/'".into());
        };
        let mut segments = Vec::new();
        let mut subtree = false;
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                if part.is_empty() {
                    return Err("empty segment (no '//' and no trailing '/'; end with '/**' for a subtree)".into());
                }
                if *part == "**" {
                    if !last {
                        return Err("'**' is only allowed as the last segment".into());
                    }
                    subtree = true;
                } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if !is_param_name(name) {
                        return Err(format!(
                            "parameter \"{{{name}}}\" must be a name of letters, digits and '_', not starting with a digit"
                        ));
                    }
                    if segments.iter().any(|s| matches!(s, Segment::Param(p) if **p == *name)) {
                        return Err(format!("parameter \"{{{name}}}\" appears twice"));
                    }
                    segments.push(Segment::Param(name.into()));
                } else if part.contains(['{', '}', '*']) {
                    return Err(format!(
                        "segment \"{part}\": '{{name}}' must be a whole segment and '*' is only allowed as a final '**'"
                    ));
                } else {
                    match crate::request::canonical_path(&format!("/{part}")) {
                        Ok((canonical, None)) if canonical[1..] == **part && *part != "." && *part != ".." => {
                            segments.push(Segment::Literal((*part).into()));
                        }
                        _ => {
                            return Err(format!(
                                "segment \"{part}\" is not canonical (no dot segments, query, fragment, backslash, \
                                 ambiguous or needless percent-encoding)"
                            ));
                        }
                    }
                }
            }
        }
        if segments.len() > MAX_TEMPLATE_SEGMENTS {
            return Err(format!("more than {MAX_TEMPLATE_SEGMENTS} segments"));
        }
        if segments.iter().filter(|s| matches!(s, Segment::Param(_))).count() > MAX_PARAMS {
            return Err(format!("more than {MAX_PARAMS} parameters"));
        }
        Ok(Template { text: text.into(), segments, subtree })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segment index of parameter `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.segments.iter().position(|s| matches!(s, Segment::Param(p) if **p == *name))
    }

    /// Parameter names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(&**p),
            Segment::Literal(_) => None,
        })
    }

    /// Each parameter's name with its segment of a path this template matches.
    pub fn parameters<'a>(&self, path: &Segments<'a>) -> Vec<(&str, &'a str)> {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Segment::Param(name) => path.get(i).map(|v| (&**name, v)),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Direct match, without the trie (explanations and cross-checks).
    pub fn matches(&self, path: &Segments<'_>) -> bool {
        let n = self.segments.len();
        if path.len() < n || (!self.subtree && path.len() != n) {
            return false;
        }
        self.segments.iter().enumerate().all(|(i, s)| match (s, path.get(i)) {
            (Segment::Literal(l), Some(seg)) => **l == *seg,
            (Segment::Param(_), Some(seg)) => !seg.is_empty(),
            (_, None) => false,
        })
    }

    /// Whether every path this template matches is also matched by `other` (for shadowing warnings).
    pub fn covered_by(&self, other: &Template) -> bool {
        let (n, m) = (self.segments.len(), other.segments.len());
        if !(other.subtree && n >= m || !other.subtree && !self.subtree && n == m) {
            return false;
        }
        other.segments.iter().zip(&self.segments).all(|(o, s)| match (o, s) {
            (Segment::Param(_), _) => true,
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Literal(_), Segment::Param(_)) => false,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 64
}

/// A canonical request path split into segments, without allocating: `/` has none, `/a/` has `a` and an
/// empty last segment (so `/orders` does not match `/orders/`; `/orders/**` matches both).
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    path: &'a str,
    /// Byte ranges of the first segments; a template never looks deeper.
    ranges: [(u32, u32); MAX_TEMPLATE_SEGMENTS],
    known: usize,
    count: usize,
}

impl<'a> Segments<'a> {
    /// Splits a canonical path (starting with `/`).
    pub fn new(path: &'a str) -> Segments<'a> {
        let mut ranges = [(0u32, 0u32); MAX_TEMPLATE_SEGMENTS];
        let (mut known, mut count) = (0, 0);
        if path.len() > 1 && path.len() <= u32::MAX as usize {
            let mut start = 1usize;
            loop {
                let end = path[start..].find('/').map_or(path.len(), |i| start + i);
                if known < MAX_TEMPLATE_SEGMENTS {
                    ranges[known] = (start as u32, end as u32);
                    known += 1;
                }
                count += 1;
                if end == path.len() {
                    break;
                }
                start = end + 1;
            }
        }
        Segments { path, ranges, known, count }
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the path is `/`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Segment `i`, if it is among the first [`MAX_TEMPLATE_SEGMENTS`].
    pub fn get(&self, i: usize) -> Option<&'a str> {
        if i >= self.known {
            return None;
        }
        let (a, b) = self.ranges[i];
        self.path.get(a as usize..b as usize)
    }
}

/// Where a rule's template sits in a trie: the rule and which of the policy's templates matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Index of the rule in the policy.
    pub rule: u32,
    /// Index of the template in the policy's template table.
    pub template: u32,
}

#[derive(Debug, Default, Clone)]
struct Node {
    literal: FxHashMap<Box<str>, u32>,
    param: Option<u32>,
    /// Templates ending here.
    exact: Vec<Entry>,
    /// Templates ending here with `/**`.
    subtree: Vec<Entry>,
}

/// Templates indexed by segment.
#[derive(Debug, Clone)]
pub struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie { nodes: vec![Node::default()] }
    }
}

impl Trie {
    /// Adds a template for a rule.
    pub fn insert(&mut self, template: &Template, entry: Entry) {
        let mut at = 0usize;
        for segment in &template.segments {
            let next = match segment {
                Segment::Literal(l) => self.nodes[at].literal.get(l).copied(),
                Segment::Param(_) => self.nodes[at].param,
            };
            at = match next {
                Some(n) => n as usize,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    match segment {
                        Segment::Literal(l) => self.nodes[at].literal.insert(l.clone(), n as u32),
                        Segment::Param(_) => self.nodes[at].param.replace(n as u32),
                    };
                    n
                }
            };
        }
        let node = &mut self.nodes[at];
        if template.subtree { node.subtree.push(entry) } else { node.exact.push(entry) }
    }

    /// Calls `f` for every entry whose template matches `path`; stops early if `f` breaks. Each node is
    /// reached by one path from the root, so a walk visits at most one node per trie node on the way.
    pub fn walk<B>(&self, path: &Segments<'_>, f: &mut impl FnMut(Entry) -> ControlFlow<B>) -> ControlFlow<B> {
        self.visit(0, 0, path, f)
    }

    fn visit<B>(
        &self,
        node: usize,
        depth: usize,
        path: &Segments<'_>,
        f: &mut impl FnMut(Entry) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let Some(n) = self.nodes.get(node) else { return ControlFlow::Continue(()) };
        for e in &n.subtree {
            f(*e)?;
        }
        if depth == path.len() {
            for e in &n.exact {
                f(*e)?;
            }
            return ControlFlow::Continue(());
        }
        let Some(segment) = path.get(depth) else { return ControlFlow::Continue(()) };
        if let Some(&next) = n.literal.get(segment) {
            self.visit(next as usize, depth + 1, path, f)?;
        }
        if let (Some(next), false) = (n.param, segment.is_empty()) {
            self.visit(next as usize, depth + 1, path, f)?;
        }
        ControlFlow::Continue(())
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].exact.is_empty() && self.nodes[0].subtree.is_empty()
    }

    /// Approximate heap bytes, for the benchmark's memory figure.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self
                .nodes
                .iter()
                .map(|n| {
                    n.literal.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
                        + n.literal.keys().map(|k| k.len()).sum::<usize>()
                        + (n.exact.capacity() + n.subtree.capacity()) * std::mem::size_of::<Entry>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn matches(template: &str, path: &str) -> bool {
        let tpl = t(template);
        let segs = Segments::new(path);
        let direct = tpl.matches(&segs);
        let mut trie = Trie::default();
        trie.insert(&tpl, Entry { rule: 0, template: 0 });
        let mut hit = false;
        let _ = trie.walk::<()>(&segs, &mut |_| {
            hit = true;
            ControlFlow::Continue(())
        });
        assert_eq!(direct, hit, "{template} vs {path}: direct and trie disagree");
        direct
    }

    #[test]
    fn literal_param_and_subtree() {
        assert!(matches("/orders", "/orders"));
        assert!(!matches("/orders", "/orders/"));
        assert!(!matches("/orders", "/orders/7"));
        assert!(!matches("/orders", "/orders-old"));
        assert!(matches("/orders/{id}", "/orders/7"));
        assert!(!matches("/orders/{id}", "/orders/"));
        assert!(!matches("/orders/{id}", "/orders/7/items"));
        assert!(matches("/orders/**", "/orders"));
        assert!(matches("/orders/**", "/orders/"));
        assert!(matches("/orders/**", "/orders/7/items"));
        assert!(!matches("/orders/**", "/ordersx"));
        assert!(matches("/**", "/"));
        assert!(matches("/**", "/anything/at/all"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/a"));
        assert!(matches("/patients/{p}/records/**", "/patients/42/records/2026/x"));
        assert!(!matches("/patients/{p}/records/**", "/patients/42/notes"));
    }

    #[test]
    fn deep_paths_still_reach_subtree_templates() {
        let deep = format!("{}/x", "/a".repeat(100));
        assert!(matches("/a/**", &deep));
        assert!(!matches("/a/a", &deep));
        assert_eq!(Segments::new(&deep).len(), 101);
    }

    #[test]
    fn params_are_positions() {
        let tpl = t("/patients/{patient}/records/{record}");
        assert_eq!(tpl.param_index("patient"), Some(1));
        assert_eq!(tpl.param_index("record"), Some(3));
        assert_eq!(tpl.param_index("x"), None);
        assert_eq!(tpl.params().collect::<Vec<_>>(), ["patient", "record"]);
        let segs = Segments::new("/patients/42/records/7");
        assert_eq!(segs.get(1), Some("42"));
        assert_eq!(segs.get(3), Some("7"));
    }

    #[test]
    fn bad_templates_say_why() {
        for (bad, why) in [
            ("orders", "must start"),
            ("/orders/", "empty segment"),
            ("//orders", "empty segment"),
            ("/a/**/b", "last segment"),
            ("/a/*", "'*'"),
            ("/a/x{id}", "whole segment"),
            ("/a/{1x}", "parameter"),
            ("/a/{id}/{id}", "twice"),
            ("/a/../b", "not canonical"),
            ("/a/./b", "not canonical"),
            ("/a/%2F", "not canonical"),
            ("/a/%41", "not canonical"),
            ("/a?x=1", "not canonical"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(Template::parse(&"/a".repeat(33)).unwrap_err().contains("segments"));
    }

    #[test]
    fn coverage_for_shadowing() {
        assert!(t("/admin/users").covered_by(&t("/admin/**")));
        assert!(t("/admin/**").covered_by(&t("/admin/**")));
        assert!(t("/admin").covered_by(&t("/admin/**")));
        assert!(t("/a/{x}").covered_by(&t("/a/{y}")));
        assert!(t("/a/b").covered_by(&t("/a/{y}")));
        assert!(!t("/a/{x}").covered_by(&t("/a/b")));
        assert!(!t("/admin/**").covered_by(&t("/admin/{x}")));
        assert!(!t("/adminx").covered_by(&t("/admin/**")));
    }

    #[test]
    fn many_templates_share_a_trie() {
        let mut trie = Trie::default();
        let templates: Vec<Template> = (0..1000).map(|i| t(&format!("/svc{i}/items/{{id}}"))).collect();
        for (i, tpl) in templates.iter().enumerate() {
            trie.insert(tpl, Entry { rule: i as u32, template: i as u32 });
        }
        let mut seen = Vec::new();
        let _ = trie.walk::<()>(&Segments::new("/svc500/items/9"), &mut |e| {
            seen.push(e.rule);
            ControlFlow::Continue(())
        });
        assert_eq!(seen, [500]);
    }
}
