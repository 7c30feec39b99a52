//! The `mcp` section: which routes are MCP endpoints, the protocol revisions they accept, the body cap, how
//! refusals are answered, list filtering, and the RFC 9728 metadata served for each.

use super::{ConfigError, err};
use crate::engine::{DEFAULT_BODY_CAP, MAX_BODY_CAP, McpDenial, McpEndpoint, RouteSelector, metadata};
use crate::policy::path::Template;
use crate::request::mcp::Revision;
use serde::Deserialize;

/// The `mcp` section as written.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct McpDocument {
    /// The MCP endpoints.
    pub endpoints: Vec<McpEndpointDocument>,
    /// Whether the headers of an MCP request wait for the decision on its body (default false). Needs the Wasm
    /// filter's `allow_on_headers_stop_iteration: true` (Envoy 1.35 or later): without it Envoy never hands the
    /// plugin a body while the headers wait, and such requests hang until Envoy's timeouts end them.
    #[serde(default)]
    pub hold_headers: bool,
}

/// One MCP endpoint as written. Selectors of different kinds must all hold; within one kind any entry.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct McpEndpointDocument {
    /// Path templates (as in policy rules), e.g. `["/mcp"]`.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Envoy route names (`xds.route_name`).
    #[serde(default)]
    pub envoy_routes: Option<Vec<String>>,
    /// Envoy route tags (route metadata `filter_metadata.agent_iam.tag`).
    #[serde(default)]
    pub envoy_route_tags: Option<Vec<String>>,
    /// Protocol revisions accepted: `2026-07-28`, `2025-11-25`, `2025-06-18` (default: all three).
    #[serde(default)]
    pub revisions: Option<Vec<String>>,
    /// Largest JSON-RPC body read, bytes (default 65536, at most 1048576); larger is answered 413.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// `forbidden` (default: 403 and a JSON-RPC error) or `unknown` (as if the tool did not exist).
    #[serde(default)]
    pub denial: Option<String>,
    /// Whether list responses lose the entries the caller may not use (default true).
    #[serde(default)]
    pub filter_lists: Option<bool>,
    /// The endpoint's canonical URI (RFC 8707), e.g. `https://gw.example.com/mcp`: tokens must name it in
    /// `aud`, and it is the `resource` of the metadata.
    pub resource: String,
    /// Authorization servers clients get tokens from (RFC 9728 `authorization_servers`, at least one).
    pub authorization_servers: Vec<String>,
    /// Scopes clients may ask for (`scopes_supported`).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Human-readable name (`resource_name`).
    #[serde(default)]
    pub resource_name: Option<String>,
    /// Documentation URL (`resource_documentation`).
    #[serde(default)]
    pub resource_documentation: Option<String>,
}

/// An absolute `https` URL without fragment, query or user info, with a lower-case host, as RFC 8707 and RFC
/// 9728 ask of resource identifiers (`http` is accepted for loopback hosts, for local testing).
fn resource_url(text: &str) -> Result<(), &'static str> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://").filter(|r| r.starts_with("127.0.0.1") || r.starts_with("localhost")))
        .ok_or("must be an https URL (http only for 127.0.0.1 or localhost)")?;
    if !text.bytes().all(|b| b.is_ascii_graphic()) || text.len() > 512 {
        return Err("must be at most 512 visible ASCII characters");
    }
    if text.contains(['#', '?', '@', '\\']) {
        return Err("must have no fragment, query or user info");
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must name a lower-case host");
    }
    if rest.split('/').skip(1).any(|s| s == "." || s == "..") {
        return Err("must have no dot segments");
    }
    Ok(())
}

fn text_list(list: &Option<Vec<String>>, at: &str) -> Result<Vec<String>, ConfigError> {
    match list {
        None => Ok(Vec::new()),
        Some(l) if l.is_empty() => Err(err(at, "must not be empty (leave it out instead)")),
        Some(l) => {
            for (i, item) in l.iter().enumerate() {
                if item.is_empty() || !item.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(err(format!("{at}[{i}]"), "must be visible ASCII"));
                }
            }
            Ok(l.clone())
        }
    }
}

/// The requests a part of the configuration at `at` is for (`paths`, `envoy_routes`, `envoy_route_tags`), at
/// least one selector given: `what` names it in the error ("the endpoint", "the routes").
pub(super) fn route_selector(
    paths: &Option<Vec<String>>,
    envoy_routes: &Option<Vec<String>>,
    envoy_route_tags: &Option<Vec<String>>,
    at: &str,
    what: &str,
) -> Result<RouteSelector, ConfigError> {
    let mut templates = Vec::new();
    if let Some(list) = paths {
        if list.is_empty() {
            return Err(err(format!("{at}.paths"), "must not be empty (leave it out instead)"));
        }
        for (j, p) in list.iter().enumerate() {
            templates.push(Template::parse(p).map_err(|m| err(format!("{at}.paths[{j}]"), m))?);
        }
    }
    let select = RouteSelector {
        paths: templates,
        routes: text_list(envoy_routes, &format!("{at}.envoy_routes"))?,
        route_tags: text_list(envoy_route_tags, &format!("{at}.envoy_route_tags"))?,
    };
    if select.is_empty() {
        return Err(err(at, format!("select {what} by paths, envoy_routes or envoy_route_tags")));
    }
    Ok(select)
}

/// Validates the section into endpoints, every error with its path.
pub fn endpoints(doc: &McpDocument) -> Result<Vec<McpEndpoint>, ConfigError> {
    let mut out: Vec<McpEndpoint> = Vec::with_capacity(doc.endpoints.len());
    if doc.endpoints.is_empty() {
        return Err(err("mcp.endpoints", "must not be empty (leave `mcp` out instead)"));
    }
    for (i, e) in doc.endpoints.iter().enumerate() {
        let at = |f: &str| format!("mcp.endpoints[{i}].{f}");
        let select = route_selector(
            &e.paths,
            &e.envoy_routes,
            &e.envoy_route_tags,
            &format!("mcp.endpoints[{i}]"),
            "the endpoint",
        )?;
        let revisions = match &e.revisions {
            None => Revision::ALL.to_vec(),
            Some(l) if l.is_empty() => return Err(err(at("revisions"), "must not be empty (leave it out for all)")),
            Some(l) => {
                let mut revisions = Vec::new();
                for (j, r) in l.iter().enumerate() {
                    let revision = Revision::parse(r).ok_or_else(|| {
                        err(
                            format!("{}[{j}]", at("revisions")),
                            format!("unknown revision \"{r}\" (expected 2026-07-28, 2025-11-25 or 2025-06-18)"),
                        )
                    })?;
                    if !revisions.contains(&revision) {
                        revisions.push(revision);
                    }
                }
                revisions
            }
        };
        let max_body_bytes = e.max_body_bytes.unwrap_or(DEFAULT_BODY_CAP);
        if !(256..=MAX_BODY_CAP).contains(&max_body_bytes) {
            return Err(err(at("max_body_bytes"), format!("must be between 256 and {MAX_BODY_CAP}")));
        }
        let denial = match e.denial.as_deref() {
            None | Some("forbidden") => McpDenial::Forbidden,
            Some("unknown") => McpDenial::Unknown,
            Some(other) => {
                return Err(err(
                    at("denial"),
                    format!("unknown value \"{other}\" (expected \"forbidden\" or \"unknown\")"),
                ));
            }
        };
        resource_url(&e.resource).map_err(|m| err(at("resource"), m))?;
        if e.authorization_servers.is_empty() {
            return Err(err(at("authorization_servers"), "name at least one (RFC 9728)"));
        }
        for (j, s) in e.authorization_servers.iter().enumerate() {
            if !(s.starts_with("https://") || s.starts_with("http://")) || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(format!("{}[{j}]", at("authorization_servers")), "must be an issuer URL"));
            }
        }
        for (j, s) in e.scopes_supported.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                return Err(err(format!("{}[{j}]", at("scopes_supported")), "must be a scope token"));
            }
        }
        let (metadata_path, metadata_url, metadata) = metadata(
            &e.resource,
            &e.authorization_servers,
            &e.scopes_supported,
            e.resource_name.as_deref(),
            e.resource_documentation.as_deref(),
        )
        .ok_or_else(|| err(at("resource"), "must be an absolute URL"))?;
        if let Some(j) = out.iter().position(|o| o.metadata_path == metadata_path) {
            return Err(err(
                at("resource"),
                format!("its metadata would be served at the same path as mcp.endpoints[{j}]'s ({metadata_path})"),
            ));
        }
        out.push(McpEndpoint {
            select,
            revisions,
            max_body_bytes,
            denial,
            filter_lists: e.filter_lists.unwrap_or(true),
            resource: e.resource.clone(),
            metadata_path,
            metadata_url,
            metadata,
            dpop_only: false,
        });
    }
    Ok(out)
}
