//! Configuration errors: every problem found, each naming where it is, what was found and what
//! is allowed.
//!
//! Validation does not stop at the first problem: a user fixing a file should see all of them
//! at once. Errors are plain data (`Send + Sync + Clone`).

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file could not be read.
    Read {
        /// The file.
        file: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The text is not valid TOML; nothing else was checked.
    Syntax {
        /// The key the error is about, when known (a key or table defined twice, a value that
        /// cannot be read); the reason names it too.
        path: Option<String>,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's description.
        reason: String,
    },
    /// A key that is unknown, has a value of the wrong type, or breaks a rule.
    Key {
        /// The key, `section.key` (or `section.key[i]` for an element of an array).
        path: String,
        /// What is wrong, ending in `got <value>` where a value is involved.
        message: String,
    },
}

impl Problem {
    /// The key path of a [`Problem::Key`], or of a [`Problem::Syntax`] about one key.
    pub fn path(&self) -> Option<&str> {
        match self {
            Problem::Key { path, .. } => Some(path),
            Problem::Syntax { path, .. } => path.as_deref(),
            Problem::Read { .. } => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Read { file, reason } => {
                write!(f, "{}: cannot read: {reason}", file.display())
            }
            Problem::Syntax {
                line,
                column,
                reason,
                ..
            } => {
                // The reason names the key when it is known (`path`).
                write!(
                    f,
                    "TOML syntax error at line {line}, column {column}: {}",
                    cut(reason, MAX_REASON)
                )
            }
            Problem::Key { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

/// The most problems a [`ConfigError`] holds; the others are only counted
/// ([`ConfigError::omitted`]), so that a file of a million unknown keys gives a short message.
pub const MAX_PROBLEMS: usize = 20;

/// A value or key longer than this many bytes is cut in messages (see [`cut`]).
pub(crate) const MAX_VALUE: usize = 128;
/// What is kept of a value that is cut, in characters.
const KEPT_CHARS: usize = 64;
/// The parser's own words are cut beyond this many bytes.
const MAX_REASON: usize = 512;

/// `text`, or when it is longer than `max` bytes its first 64 characters followed by
/// `… (N bytes)`, N the length of the whole text: a 10 MB value is not repeated in a message.
pub(crate) fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let end = text
        .char_indices()
        .nth(KEPT_CHARS)
        .map_or(text.len(), |(i, _)| i);
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// Every problem of a configuration; never empty. `Display` prints one problem per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
    omitted: usize,
}

impl ConfigError {
    /// The problems in the order found: section by section in reference order, then the rules
    /// between keys; at most [`MAX_PROBLEMS`] of them, the first ones found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// How many more problems were found than [`problems`](Self::problems) holds.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    pub(crate) fn single(problem: Problem) -> Self {
        ConfigError {
            problems: vec![problem],
            omitted: 0,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        if self.omitted > 0 {
            write!(
                f,
                "\n... and {} more problem{}",
                self.omitted,
                if self.omitted == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects key problems and remembers which keys hold a value that was rejected, so that rules
/// between keys are not checked against a value the user did not write (a rejected key holds its
/// default) or against a value already reported.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    problems: Vec<Problem>,
    omitted: usize,
    /// Sorted, so that a path's neighbours are found in O(log n) however many were rejected.
    rejected: std::collections::BTreeSet<String>,
    /// The numbers too large for 64 bits that the parser replaced by placeholders, as written.
    pub(crate) out_of_range: Vec<String>,
}

impl Collector {
    /// Records a problem at `path` and marks `path` as rejected.
    pub(crate) fn reject(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.rejected.insert(path.clone());
        self.push(Problem::Key {
            path,
            message: message.into(),
        });
    }

    /// Keeps `problem` if fewer than [`MAX_PROBLEMS`] are kept, else counts it.
    fn push(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    /// True when a further problem would only be counted: the caller may skip building it.
    pub(crate) fn full(&self) -> bool {
        self.problems.len() >= MAX_PROBLEMS
    }

    /// Counts one problem that is not kept (the caller saw [`full`](Self::full)).
    pub(crate) fn count_omitted(&mut self) {
        self.omitted += 1;
    }

    /// Records a problem that leaves the key's value usable (an unknown key).
    pub(crate) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Problem::Key {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when a problem was recorded at `path`, inside it (`path[2]`) or around it.
    pub(crate) fn is_rejected(&self, path: &str) -> bool {
        // Around it: `path` itself or one of its prefixes that ends a key or element.
        let around = path
            .char_indices()
            .filter(|&(_, c)| c == '.' || c == '[')
            .map(|(i, _)| &path[..i])
            .chain([path])
            .any(|outer| self.rejected.contains(outer));
        // Inside it: the paths that start with `path` sort right after it.
        around
            || self
                .rejected
                .range::<str, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
                .take_while(|r| r.starts_with(path))
                .any(|r| nested_or_equal(r, path))
    }

    /// True when any of `paths` [is rejected](Self::is_rejected).
    pub(crate) fn any_rejected(&self, paths: &[&str]) -> bool {
        paths.iter().any(|p| self.is_rejected(p))
    }

    pub(crate) fn into_result(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
                omitted: self.omitted,
            })
        }
    }
}

/// `inner` is `outer` or a key or element below it.
fn nested_or_equal(inner: &str, outer: &str) -> bool {
    match inner.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}
