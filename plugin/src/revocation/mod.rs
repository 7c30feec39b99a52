//! Continuous revocation: tokens refused before they expire, because an identity provider, an operator or
//! a revocation list says so.
//!
//! - [`selector`]: what a revocation names (a `jti`, an agent, a subject, a trust domain, a `client_id`, an
//!   issuer with a cut-off), and the facts of a token it is compared with.
//! - [`set`]: the revocations in force, indexed so that a check costs the same with ten or ten thousand.
//! - [`state`]: the state all worker VMs share (proxy-wasm shared data, compare-and-swap).
//!
//! Pure: the filter reads and writes shared data through [`state::SharedStore`], fetches lists and polls
//! transmitters through Envoy clusters, and hands the engine a new [`set::RevocationSet`] when the state
//! changes. Beside `policy` and `audit`: it reads verified tokens and nothing above them.

pub mod document;
pub mod list;
pub mod selector;
pub mod set;
pub mod sources;
pub mod ssf;
pub mod state;

pub use selector::{Facts, Kind, Scope, Selector, SelectorError, TokenFacts};
pub use set::{Closed, Refusal, RevocationSet};
pub use state::{SharedState, SharedStore, StoreError};
