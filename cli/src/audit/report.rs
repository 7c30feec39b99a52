//! The report of `audit verify`: a table and lists for people, JSON for scripts.

use serde_json::{Value, json};
use std::fmt::Write;

/// The chain a chain follows (its seq 0's `previous_chain`).
pub struct Follows {
    pub id: String,
    pub seq: u64,
    /// Whether the named chain ends as named; `None` when it is not in the files read.
    pub linked: Option<bool>,
}

/// What `verify` found in one chain.
pub struct ChainReport {
    pub id: String,
    pub events: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: usize,
    pub verified: usize,
    pub last_checkpoint: Option<u64>,
    /// Events after the last checkpoint (all of them when there is none).
    pub unsealed: usize,
    pub broken_links: usize,
    pub follows: Option<Follows>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl ChainReport {
    pub fn new(id: &str, events: usize) -> ChainReport {
        ChainReport {
            id: id.to_owned(),
            events,
            first_seq: None,
            last_seq: None,
            checkpoints: 0,
            verified: 0,
            last_checkpoint: None,
            unsealed: 0,
            broken_links: 0,
            follows: None,
            problems: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// What `verify` found in all the files.
pub struct Report {
    pub chains: Vec<ChainReport>,
    /// Problems with lines that belong to no chain (not JSON, no readable chain id or seq).
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    /// Lines read that were not placeholders.
    pub lines: u64,
    /// Placeholder lines (empty or `-`).
    pub skipped: u64,
    pub macs_checked: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.chains.iter().all(|c| c.problems.is_empty())
    }

    /// Every message of one kind, prefixed with its chain, chains in order, then those of no chain.
    fn all(&self, kind: fn(&ChainReport) -> &Vec<String>, general: &[String]) -> Vec<String> {
        let per_chain = self.chains.iter().flat_map(|c| kind(c).iter().map(move |m| format!("chain {}: {m}", c.id)));
        per_chain.chain(general.iter().cloned()).collect()
    }

    pub fn to_json(&self) -> Value {
        let chains: Vec<Value> = self
            .chains
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "events": c.events,
                    "first_seq": c.first_seq,
                    "last_seq": c.last_seq,
                    "checkpoints": c.checkpoints,
                    // null when MACs were not checked, so that 0 always means none verified.
                    "checkpoints_verified": self.macs_checked.then_some(c.verified),
                    "last_checkpoint_seq": c.last_checkpoint,
                    "unsealed": c.unsealed,
                    "broken_links": c.broken_links,
                    "previous_chain": c.follows.as_ref().map(|f| json!({"id": f.id, "seq": f.seq, "linked": f.linked})),
                    "problems": c.problems,
                    "warnings": c.warnings,
                    "notes": c.notes,
                })
            })
            .collect();
        json!({
            "chains": chains,
            "problems": self.all(|c| &c.problems, &self.problems),
            "warnings": self.all(|c| &c.warnings, &[]),
            "notes": self.all(|c| &c.notes, &self.notes),
            "lines": self.lines,
            "skipped_lines": self.skipped,
            "macs_checked": self.macs_checked,
            "ok": self.ok(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let header = ["CHAIN", "EVENTS", "SEQ", "CHECKPOINTS", "VERIFIED", "LAST CHECKPOINT", "UNSEALED"];
        let mut rows: Vec<[String; 7]> = vec![header.map(str::to_owned)];
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        for c in &self.chains {
            rows.push([
                c.id.clone(),
                c.events.to_string(),
                format!("{}..{}", opt(c.first_seq), opt(c.last_seq)),
                c.checkpoints.to_string(),
                if self.macs_checked { c.verified.to_string() } else { "-".into() },
                opt(c.last_checkpoint),
                c.unsealed.to_string(),
            ]);
        }
        if !self.chains.is_empty() {
            out.push_str(&table(&rows));
        }
        for (title, list) in [
            ("problems", self.all(|c| &c.problems, &self.problems)),
            ("warnings", self.all(|c| &c.warnings, &[])),
            ("notes", self.all(|c| &c.notes, &self.notes)),
        ] {
            if !list.is_empty() {
                let _ = writeln!(out, "\n{title}:");
                for m in list {
                    let _ = writeln!(out, "  {m}");
                }
            }
        }
        let problems = self.all(|c| &c.problems, &self.problems).len();
        let events: usize = self.chains.iter().map(|c| c.events).sum();
        let summary = format!("{} chain(s), {events} event(s)", self.chains.len());
        let _ = if problems == 0 {
            writeln!(out, "\nOK: {summary}, no problem")
        } else {
            writeln!(out, "\nFAILED: {summary}, {problems} problem(s)")
        };
        out
    }
}

/// Left-aligned columns two spaces apart, without trailing spaces.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
