//! `agent-iam audit`: verify the hash chains of the plugin's audit logs, and query their events.
//!
//! The logs are NDJSON as Envoy's file access logger writes the plugin's filter-state value: one OCSF API
//! Activity event per line, `-` where a request had no event. Every event carries `unmapped.chain`
//! (`id`, `seq`, `prev` = base64url BLAKE3 hash of the previous line of its chain, optionally `previous_chain`,
//! and on checkpoints `kid` and `mac` = HMAC-SHA256 of the line without its `,"mac":"…"` member).

mod lines;
mod query;
mod report;
mod time;
mod verify;

use crate::Usage;
use std::path::PathBuf;

/// `audit` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Verifies every hash chain in the logs: links, sequence numbers, checkpoint MACs, and the link from a
    /// chain to the one it follows. Files are read in the order given, as one stream (oldest first). Exit 0
    /// when there is no problem, 1 when there is any, 2 on usage errors.
    #[command(after_help = verify::AFTER_HELP)]
    Verify(VerifyArgs),
    /// Prints the events that match every filter given (no verification). Exit 0 if any event matched, 1 if
    /// none, 2 on usage errors.
    #[command(after_help = time::AFTER_HELP)]
    Query(QueryArgs),
}

/// Options of `audit verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The audit logs, oldest first (rotated files before the current one).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// A checkpoint key: FILE holds the key as base64url text. KID=FILE is the key of checkpoints with that
    /// `kid`; a bare FILE (or =FILE) is for checkpoints without a `kid`. A single key, named or not, is used
    /// for every checkpoint. Repeatable.
    #[arg(long = "key", value_name = "[KID=]FILE")]
    pub keys: Vec<String>,
    /// The logs are complete: a chain that does not start at seq 0, or a chain named by `previous_chain` but
    /// absent, is a problem rather than a note (by default older files may have been rotated away).
    #[arg(long)]
    pub complete: bool,
    /// Print a JSON report, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Options of `audit query`. Filters are ANDed.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// The audit logs, oldest first.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The agent: `actor.app_uid`, or any member of the delegation chain `unmapped.act_chain`.
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// The subject: `actor.user.uid`.
    #[arg(long, value_name = "ID")]
    pub subject: Option<String>,
    /// A resource: any `resources[]` element whose `uid` or `name` is TEXT (or `type:uid`, as printed).
    #[arg(long, value_name = "TEXT")]
    pub resource: Option<String>,
    /// The deciding rule: `policy.uid`.
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    /// The decision: `unmapped.decision`, else `action_id` (1 allow, 2 deny).
    #[arg(long, value_enum)]
    pub decision: Option<query::Decision>,
    /// Events at or after T: RFC 3339 (2026-12-01T00:00:00Z) or a duration back from now (7d, 24h, 30m, 10s).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Events before T (exclusive), in the same forms as --since.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// The HTTP status of the response: `http_response.code`.
    #[arg(long, value_name = "CODE")]
    pub status: Option<u16>,
    /// Print the matching events as read, one per line (NDJSON), instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `audit` subcommand: `Ok(true)` exit 0, `Ok(false)` exit 1, `Err` exit 2.
pub fn run(command: Command) -> Result<bool, Usage> {
    match command {
        Command::Verify(args) => verify::run(&args),
        Command::Query(args) => query::run(&args),
    }
}
