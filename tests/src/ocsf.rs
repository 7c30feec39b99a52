//! An OCSF 1.8.0 event validator for the tests: every audit event the plugin emits can be checked against the
//! schema it claims (`metadata.version`).
//!
//! It reads the OCSF schema *sources* vendored in `tests/ocsf/schema-1.8.0/` (the part API Activity 6003 and
//! Authentication 3002 need; see `tests/ocsf/README.md`) and compiles them as the OCSF server does (see
//! `ocsf/compile.rs` for `$include`, `extends`, dictionary and profile resolution), then walks an event:
//!
//! - the class comes from `class_uid`; `category_uid` must be the class's category and `type_uid` must be
//!   `class_uid * 100 + activity_id`;
//! - `metadata.profiles` decides which profile attributes exist (`action_id` only with `security_control`);
//! - required attributes must be present (null counts as absent), unknown ones are errors except inside
//!   objects that define no attributes (`unmapped`) and `json_t` values;
//! - values must have their data type (`timestamp_t` integer milliseconds, `port_t` 0..=65535, `ip_t`,
//!   `datetime_t` RFC 3339, …), arrays where `is_array`, objects recursively with their `at_least_one` and
//!   `just_one` constraints (the class's too);
//! - enum values must be defined, and a caption sibling (`severity` for `severity_id`) must be the value's
//!   caption unless the value is 99 (Other).
//!
//! Not checked: deprecations and missing recommended attributes (the OCSF validator only warns),
//! `observables`, and `bytestring_t`'s pattern (see `ocsf/formats.rs`).
//!
//! Nothing here reads outside the crate: the schema path is fixed at build time from `CARGO_MANIFEST_DIR`.

mod check;
mod compile;
mod formats;

use std::path::Path;
use std::sync::LazyLock;

use serde_json::Value;

pub use compile::{AttrType, Attribute, Constraint, DataType, Entity, Primitive, Requirement, Schema};

/// The vendored OCSF schema sources.
pub const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ocsf/schema-1.8.0");

/// Example events (`ocsf-*.json`), vendored with the schema.
pub const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ocsf/examples");

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // The sources are part of the repository, not input: if they do not compile, no test can mean anything.
    Schema::load(Path::new(SCHEMA_DIR)).unwrap_or_else(|e| panic!("the vendored OCSF schema does not compile: {e}"))
});

/// The vendored OCSF 1.8.0 schema, compiled once.
pub fn schema() -> &'static Schema {
    &SCHEMA
}

/// Every problem of `event` against OCSF 1.8.0, each as `path: message` (`$.actor.user: …`); empty when valid.
pub fn validate(event: &Value) -> Vec<String> {
    schema().validate(event)
}

impl Schema {
    /// Every problem of `event` against this schema, each as `path: message`; empty when valid.
    pub fn validate(&self, event: &Value) -> Vec<String> {
        check::validate(self, event)
    }
}
