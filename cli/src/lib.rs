//! The `agent-iam` command's pieces, as a library for its tests: finding the plugin `.wasm`, reading keys,
//! extracting plugin configurations from manifests, the JSON Schema, serving the policy playground, and the
//! subcommands that use them.
pub mod audit;
pub mod keys;
pub mod playground;
pub mod schema;
pub mod token;
pub mod validate;
pub mod wasm;

/// A usage or input error: exit status 2.
pub struct Usage(pub String);
