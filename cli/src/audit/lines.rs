//! Reading audit logs as one stream of lines, file after file.

use crate::Usage;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// Where a line is: an index into the file list and a 1-based line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub file: usize,
    pub line: u64,
}

/// The files of one run, opened up front so that a missing file is a usage error before any output.
pub struct Logs {
    names: Vec<String>,
    files: Vec<File>,
}

impl Logs {
    pub fn open(paths: &[PathBuf]) -> Result<Logs, Usage> {
        let mut names = Vec::with_capacity(paths.len());
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            files.push(File::open(p).map_err(|e| Usage(format!("{}: {e}", p.display())))?);
            names.push(p.display().to_string());
        }
        Ok(Logs { names, files })
    }

    /// The file names, for messages (`Place::file` indexes them).
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Calls `each` with every line that is not a placeholder (empty or `-`), its bytes exactly as written
    /// without the newline: the chain hashes those bytes, so nothing is trimmed (not even a `\r`). Returns
    /// how many placeholder lines were skipped.
    pub fn for_each(self, mut each: impl FnMut(Place, &[u8])) -> Result<u64, Usage> {
        let mut skipped = 0;
        let mut buf = Vec::new();
        for (index, (file, name)) in self.files.into_iter().zip(&self.names).enumerate() {
            let mut reader = BufReader::new(file);
            let mut line = 0;
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(|e| Usage(format!("{name}: {e}")))?;
                if n == 0 {
                    break;
                }
                line += 1;
                let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                if bytes.is_empty() || bytes == b"-" {
                    skipped += 1;
                    continue;
                }
                each(Place { file: index, line }, bytes);
            }
        }
        Ok(skipped)
    }
}

/// `line N of FILE`.
pub fn describe(place: Place, names: &[String]) -> String {
    format!("line {} of {}", place.line, names.get(place.file).map_or("?", String::as_str))
}
