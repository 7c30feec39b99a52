//! MCP in policy: which messages a rule selects (`mcp.methods`, `tools`, `resources`, `prompts`), compiled
//! from the document, and the patterns they use: names with `*` globs, and resource URI templates whose
//! `{name}` parameters conditions can read (`when.resource`).

use super::PolicyError;
use super::document::McpRuleDocument;
use crate::request::mcp::McpRequest;
use std::fmt;

/// Most `{name}` parameters in one resource template.
pub const MAX_TEMPLATE_PARAMS: usize = 8;

/// A method, tool or prompt name: exact, or with `*` standing for any run of characters (`search_*`,
/// `notifications/*`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: Box<str>,
    /// The literal pieces between the `*`s, split once here rather than per request (a list of a hundred
    /// tools is matched against every rule's patterns).
    pieces: Vec<Box<str>>,
}

impl NamePattern {
    /// A pattern of visible ASCII, at most 256 characters.
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 256 visible ASCII characters ('*' for any run of characters)".into());
        }
        if text.contains("**") {
            return Err("'**' means nothing more than '*' here; write one".into());
        }
        Ok(NamePattern { text: text.into(), pieces: text.split('*').map(Box::from).collect() })
    }

    /// Whether `name` matches: the literal pieces in order, the first at the start, the last at the end.
    pub fn matches(&self, name: &str) -> bool {
        let Some((first, pieces)) = self.pieces.split_first() else { return false };
        let Some(mut rest) = name.strip_prefix(&**first) else { return false };
        let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
        for piece in middle {
            match rest.find(&**piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(&**last)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One piece of a resource template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    /// `{name}`: one or more characters, none of them `/`, `?` or `#`.
    Param(Box<str>),
    /// A final `**`: anything, including nothing.
    Rest,
}

/// A resource URI template: `trading://accounts/{account}/positions`, `file:///reports/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    text: Box<str>,
    pieces: Vec<Piece>,
}

impl UriTemplate {
    /// Parses a template: visible ASCII, `{name}` parameters (letters, digits, `_`; not starting with a digit;
    /// never two in a row), `**` only at the end, no dot segments.
    pub fn parse(text: &str) -> Result<UriTemplate, String> {
        if text.is_empty() || text.len() > 2048 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 2048 visible ASCII characters".into());
        }
        if text.split(['/', '?']).any(|s| s == "." || s == "..") || text.contains(['\\', '#']) {
            return Err("no dot segments, backslashes or fragments: requests with them are refused".into());
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else { return Err("'{' without its '}'".into()) };
                let name = &after[..end];
                let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!("parameter \"{name}\": letters, digits and '_', not starting with a digit"));
                }
                if matches!(pieces.last(), Some(Piece::Param(_))) {
                    return Err("two parameters in a row cannot be told apart".into());
                }
                if pieces.iter().any(|p| matches!(p, Piece::Param(n) if **n == *name)) {
                    return Err(format!("parameter \"{name}\" appears twice"));
                }
                pieces.push(Piece::Param(name.into()));
                rest = &after[end + 1..];
            } else if rest == "**" {
                pieces.push(Piece::Rest);
                rest = "";
            } else {
                let end = rest.find(['{', '}', '*']).unwrap_or(rest.len());
                if end == 0 {
                    return Err("'*' only as a final \"**\", '}' only after '{'".into());
                }
                pieces.push(Piece::Literal(rest[..end].into()));
                rest = &rest[end..];
            }
        }
        if pieces.iter().filter(|p| matches!(p, Piece::Param(_))).count() > MAX_TEMPLATE_PARAMS {
            return Err(format!("at most {MAX_TEMPLATE_PARAMS} parameters"));
        }
        Ok(UriTemplate { text: text.into(), pieces })
    }

    /// The parameters it captures.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(&**n),
            _ => None,
        })
    }

    /// Whether `uri` matches.
    pub fn matches(&self, uri: &str) -> bool {
        self.capture(uri, &mut |_, _| {})
    }

    /// The value of parameter `name` in `uri`, if the template matches it.
    pub fn param<'u>(&self, uri: &'u str, name: &str) -> Option<&'u str> {
        let mut found = None;
        self.capture(uri, &mut |n, v| {
            if n == name {
                found = Some(v);
            }
        })
        .then_some(found)
        .flatten()
    }

    /// Matches and reports each parameter's value. A parameter is followed by a literal (never another
    /// parameter), so it ends at the first place that literal can start, searched in order with backtracking:
    /// at most one try per position for each of the 8 parameters.
    fn capture<'u>(&self, uri: &'u str, found: &mut dyn FnMut(&str, &'u str)) -> bool {
        fn go<'u>(pieces: &[Piece], uri: &'u str, found: &mut dyn FnMut(&str, &'u str)) -> bool {
            match pieces.split_first() {
                None => uri.is_empty(),
                Some((Piece::Rest, _)) => true,
                Some((Piece::Literal(l), rest)) => uri.strip_prefix(&**l).is_some_and(|u| go(rest, u, found)),
                Some((Piece::Param(name), rest)) => {
                    let limit = uri.find(['/', '?', '#']).unwrap_or(uri.len());
                    for end in 1..=limit {
                        if !uri.is_char_boundary(end) {
                            continue;
                        }
                        let (value, after) = uri.split_at(end);
                        if go(rest, after, &mut |_, _| {}) {
                            found(name, value);
                            return go(rest, after, found);
                        }
                    }
                    false
                }
            }
        }
        go(&self.pieces, uri, found)
    }
}

impl fmt::Display for UriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a rule's `mcp` selects, compiled.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// Any of these methods.
    Methods(Vec<NamePattern>),
    /// A `tools/call` of one of these tools.
    Tools(Vec<NamePattern>),
    /// A `resources/read` (or subscribe) of a URI one of these templates matches.
    Resources(Vec<UriTemplate>),
    /// A `prompts/get` of one of these prompts.
    Prompts(Vec<NamePattern>),
}

impl Selector {
    /// Compiles `mcp` found at `at`.
    pub fn compile(doc: &McpRuleDocument, at: &str) -> Result<Selector, PolicyError> {
        let names = |list: &[String], here: &str| -> Result<Vec<NamePattern>, PolicyError> {
            if list.is_empty() {
                return Err(PolicyError::new(here, "must not be empty (leave it out instead)"));
            }
            list.iter()
                .enumerate()
                .map(|(j, n)| NamePattern::parse(n).map_err(|m| PolicyError::new(&format!("{here}[{j}]"), m)))
                .collect()
        };
        let given = [doc.methods.is_some(), doc.tools.is_some(), doc.resources.is_some(), doc.prompts.is_some()];
        match given.iter().filter(|g| **g).count() {
            0 => return Err(PolicyError::new(at, "names nothing (methods, tools, resources or prompts)")),
            1 => {}
            _ => {
                return Err(PolicyError::new(
                    at,
                    "name one of methods, tools, resources, prompts (tools imply tools/call, resources \
                     resources/read, prompts prompts/get)",
                ));
            }
        }
        if let Some(list) = &doc.methods {
            return Ok(Selector::Methods(names(list, &format!("{at}.methods"))?));
        }
        if let Some(list) = &doc.tools {
            return Ok(Selector::Tools(names(list, &format!("{at}.tools"))?));
        }
        if let Some(list) = &doc.prompts {
            return Ok(Selector::Prompts(names(list, &format!("{at}.prompts"))?));
        }
        let list = doc.resources.as_deref().unwrap_or_default();
        let here = format!("{at}.resources");
        if list.is_empty() {
            return Err(PolicyError::new(&here, "must not be empty (leave it out instead)"));
        }
        let templates = list
            .iter()
            .enumerate()
            .map(|(j, t)| UriTemplate::parse(t).map_err(|m| PolicyError::new(&format!("{here}[{j}]"), m)))
            .collect::<Result<_, _>>()?;
        Ok(Selector::Resources(templates))
    }

    /// Whether the message is one this selects. Requests that are not MCP messages never are.
    pub fn matches(&self, message: Option<&McpRequest>) -> bool {
        let Some(m) = message else { return false };
        match self {
            Selector::Methods(list) => !m.method.is_empty() && list.iter().any(|p| p.matches(&m.method)),
            Selector::Tools(list) => {
                m.method == "tools/call" && m.name.as_deref().is_some_and(|n| list.iter().any(|p| p.matches(n)))
            }
            Selector::Prompts(list) => {
                m.method == "prompts/get" && m.name.as_deref().is_some_and(|n| list.iter().any(|p| p.matches(n)))
            }
            Selector::Resources(list) => {
                matches!(m.method.as_str(), "resources/read" | "resources/subscribe" | "resources/unsubscribe")
                    && m.uri.as_deref().is_some_and(|u| list.iter().any(|t| t.matches(u)))
            }
        }
    }

    /// Whether `when.arguments` means something for the messages this selects.
    pub fn has_arguments(&self) -> bool {
        matches!(self, Selector::Tools(_) | Selector::Prompts(_))
    }

    /// The resource templates, for `when.resource`.
    pub fn templates(&self) -> &[UriTemplate] {
        match self {
            Selector::Resources(list) => list,
            _ => &[],
        }
    }

    /// Why the selector holds or not, for explanations.
    pub fn explain(&self, message: Option<&McpRequest>) -> String {
        let Some(m) = message else { return "not an MCP message".into() };
        let (what, list): (&str, Vec<String>) = match self {
            Selector::Methods(l) => ("method", l.iter().map(|p| format!("\"{p}\"")).collect()),
            Selector::Tools(l) => ("tool", l.iter().map(|p| format!("\"{p}\"")).collect()),
            Selector::Prompts(l) => ("prompt", l.iter().map(|p| format!("\"{p}\"")).collect()),
            Selector::Resources(l) => ("resource", l.iter().map(|p| format!("\"{p}\"")).collect()),
        };
        let verb = if self.matches(Some(m)) { "is one of" } else { "is not one of" };
        let shown = list.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        match self {
            Selector::Methods(_) => format!("{what} \"{}\" {verb} [{shown}]", m.method),
            _ => match m.target() {
                Some(t) => format!("{} {what} \"{t}\" {verb} [{shown}]", m.method),
                None => format!("method \"{}\" names no {what}", m.method),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        let p = |t: &str| NamePattern::parse(t).unwrap();
        assert!(p("get_quote").matches("get_quote"));
        assert!(!p("get_quote").matches("get_quotes"));
        assert!(p("search_*").matches("search_"));
        assert!(p("search_*").matches("search_quotes"));
        assert!(!p("search_*").matches("xsearch_quotes"));
        assert!(p("*").matches("anything"));
        assert!(p("a*b*c").matches("abc"));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(!p("a*b*c").matches("aXcYb"));
        assert!(!p("ab*ba").matches("aba"), "the pieces may not overlap");
        assert!(p("notifications/*").matches("notifications/initialized"));
        assert!(NamePattern::parse("a**").is_err());
        assert!(NamePattern::parse("a b").is_err());
        assert!(NamePattern::parse("").is_err());
    }

    #[test]
    fn uri_templates() {
        let t = |s: &str| UriTemplate::parse(s).unwrap();
        let positions = t("trading://accounts/{account}/positions");
        assert_eq!(positions.param("trading://accounts/42/positions", "account"), Some("42"));
        assert!(!positions.matches("trading://accounts//positions"));
        assert!(!positions.matches("trading://accounts/4/2/positions"));
        assert!(!positions.matches("trading://accounts/42/positions/x"));
        let file = t("file:///reports/{name}.json");
        assert_eq!(file.param("file:///reports/q3.v2.json", "name"), Some("q3.v2"));
        assert!(!file.matches("file:///reports/.json"));
        let rest = t("file:///reports/**");
        assert!(rest.matches("file:///reports/"));
        assert!(rest.matches("file:///reports/a/b"));
        assert!(!rest.matches("file:///report"));
        assert!(UriTemplate::parse("x://{a}{b}").is_err());
        assert!(UriTemplate::parse("x://a/../b").is_err());
        assert!(UriTemplate::parse("x://a/*").is_err());
        assert!(UriTemplate::parse("x://{1a}").is_err());
        assert!(UriTemplate::parse("x://{a}/{a}").is_err());
        assert!(UriTemplate::parse("x://**/a").is_err());
    }
}
