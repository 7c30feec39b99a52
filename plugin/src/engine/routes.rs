//! Which requests a part of the configuration is for, by canonical path template, Envoy route name and route
//! tag: MCP endpoints, and the origins DPoP proofs name.

use crate::policy::path::{Segments, Template};
use crate::request::Connection;

/// A selection of requests: selectors of different kinds must all hold, one of a kind is enough; an empty kind
/// selects every request. A route or tag Envoy could not report matches no selector of its kind.
#[derive(Debug, Clone, Default)]
pub struct RouteSelector {
    /// Canonical path templates; empty: any path.
    pub paths: Vec<Template>,
    /// Envoy route names (`xds.route_name`); empty: any.
    pub routes: Vec<String>,
    /// Envoy route tags (route metadata `filter_metadata.agent_iam.tag`); empty: any.
    pub route_tags: Vec<String>,
}

impl RouteSelector {
    /// Whether it selects nothing in particular (every request).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.routes.is_empty() && self.route_tags.is_empty()
    }

    /// Whether a request (its canonical path's segments, Envoy's route and tag) is selected.
    pub fn selects(&self, segments: &Segments<'_>, conn: &Connection<'_>) -> bool {
        (self.paths.is_empty() || self.paths.iter().any(|t| t.matches(segments)))
            && (self.routes.is_empty() || conn.route.is_some_and(|r| self.routes.iter().any(|x| x == r)))
            && (self.route_tags.is_empty() || conn.route_tag.is_some_and(|t| self.route_tags.iter().any(|x| x == t)))
    }
}
