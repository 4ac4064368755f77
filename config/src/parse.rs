//! TOML text to [`Config`], collecting every unknown key and every value of the wrong type.
//!
//! serde stops at the first error and words it without the key path, so the document is first
//! parsed into a generic TOML table (syntax errors stop here, with line and column), then each
//! known key is deserialized on its own into its section struct: a failure is reported at that
//! key's path in the schema's words and the key keeps its default. The entries of an array of
//! tables (`[[stack.app]]`) are read the same way, one entry and one key at a time, so that every
//! message names its entry (`stack.app[1].port`). Cost: one small deserialization per key
//! present, once at start-up.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

use crate::error::{Collector, ConfigError, Problem};
use crate::schema::{self, path_segment, SectionSpec};
use crate::types::AppKind;
use crate::validate;
use crate::{App, Config, Stack};

/// Parses and validates `text`.
pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    let root: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::single(syntax_problem(text, &e)))?;

    let mut out = Collector::default();
    let config = Config {
        engine: section(&root, &schema::ENGINE, &mut out),
        pool: section(&root, &schema::POOL, &mut out),
        flowtable: section(&root, &schema::FLOWTABLE, &mut out),
        swq: section(&root, &schema::SWQ, &mut out),
        port: section(&root, &schema::PORT, &mut out),
        stack: stack(&root, &mut out),
        traffic: section(&root, &schema::TRAFFIC, &mut out),
        metrics: section(&root, &schema::METRICS, &mut out),
    };
    let sections = schema::section_names();
    for key in root.keys() {
        if !sections.contains(&key.as_str()) {
            out.report(
                path_segment(key),
                format!("unknown section (expected one of: {})", sections.join(", ")),
            );
        }
    }
    validate::check(&config, &mut out);
    out.into_result().map(|()| config)
}

/// Reads one section whose keys are all plain values.
fn section<T: DeserializeOwned + Default>(
    root: &Table,
    spec: &SectionSpec,
    out: &mut Collector,
) -> T {
    section_table(root, spec, out)
        .map_or_else(T::default, |table| keys(table, spec, spec.name, out))
}

/// The table of section `spec`; `None` when it is missing (all defaults) or not a table
/// (reported).
fn section_table<'a>(
    root: &'a Table,
    spec: &SectionSpec,
    out: &mut Collector,
) -> Option<&'a Table> {
    let value = root.get(spec.name)?;
    let table = value.as_table();
    if table.is_none() {
        out.reject(spec.name, not_a_table(spec, value));
    }
    table
}

fn not_a_table(spec: &SectionSpec, value: &Value) -> String {
    format!(
        "must be a table of keys ({}), got {}",
        spec.key_names().join(", "),
        render(value)
    )
}

/// Reads the keys of `table` (a section, or an entry of an array of tables at `path`): each
/// known key alone (so one bad key cannot hide another), then all the accepted keys together.
/// Arrays of tables (keys with `entries`) are left to the caller.
fn keys<T: DeserializeOwned + Default>(
    table: &Table,
    spec: &SectionSpec,
    path: &str,
    out: &mut Collector,
) -> T {
    let mut accepted = Table::new();
    for key in spec.keys.iter().filter(|key| key.entries.is_none()) {
        let Some(value) = table.get(key.name) else {
            continue;
        };
        let mut alone = Table::new();
        alone.insert(key.name.to_owned(), value.clone());
        match alone.try_into::<T>() {
            Ok(_) => {
                accepted.insert(key.name.to_owned(), value.clone());
            }
            Err(_) => out.reject(
                format!("{path}.{}", key.name),
                format!("must be {}, got {}", key.allowed.describe(), render(value)),
            ),
        }
    }
    for name in table.keys() {
        if spec.key(name).is_none() {
            out.report(
                format!("{path}.{}", path_segment(name)),
                unknown_key(&spec.key_names()),
            );
        }
    }

    // Keys that deserialize one by one deserialize together; should that ever break, the
    // table keeps its defaults and says so rather than panicking.
    accepted.try_into::<T>().unwrap_or_else(|e| {
        out.reject(path, e.message().to_owned());
        T::default()
    })
}

/// Reads `[stack]`: its plain keys, then every `[[stack.app]]` entry.
fn stack(root: &Table, out: &mut Collector) -> Stack {
    let Some(table) = section_table(root, &schema::STACK, out) else {
        return Stack::default();
    };
    let mut stack: Stack = keys(table, &schema::STACK, schema::STACK.name, out);
    if let Some(value) = table.get("app") {
        stack.app = apps(value, out);
    }
    stack
}

/// One `[[stack.app]]` entry as read, before its required keys are known to be present.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AppDraft {
    kind: Option<AppKind>,
    port: Option<u16>,
    upstream: Option<SocketAddr>,
    threads: Vec<u16>,
}

/// Reads the `[[stack.app]]` entries. Every entry yields an app, so that the index in later
/// messages is the index in the file; an entry that is not a table, or a key that is missing or
/// rejected, holds a placeholder at a rejected path, which no later rule looks at.
fn apps(value: &Value, out: &mut Collector) -> Vec<App> {
    let spec = &schema::APP;
    let Some(entries) = value.as_array() else {
        let allowed = schema::STACK
            .key("app")
            .map_or_else(String::new, |key| key.allowed.describe());
        out.reject(
            spec.name,
            format!("must be {allowed}, got {}", render(value)),
        );
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("{}[{i}]", spec.name);
            let Some(table) = entry.as_table() else {
                out.reject(&path, not_a_table(spec, entry));
                return App::new(AppKind::default(), 0);
            };
            let draft: AppDraft = keys(table, spec, &path, out);
            for key in spec.keys.iter().filter(|key| key.required) {
                if !table.contains_key(key.name) {
                    out.reject(
                        format!("{path}.{}", key.name),
                        format!("required key missing (must be {})", key.allowed.describe()),
                    );
                }
            }
            App {
                kind: draft.kind.unwrap_or_default(),
                port: draft.port.unwrap_or(0),
                upstream: draft.upstream,
                threads: draft.threads,
            }
        })
        .collect()
}

fn unknown_key(allowed: &[&str]) -> String {
    format!("unknown key (expected one of: {})", allowed.join(", "))
}

/// A TOML value as it would be written in the file.
pub(crate) fn render(value: &Value) -> String {
    value.to_string()
}

fn syntax_problem(text: &str, error: &toml::de::Error) -> Problem {
    let (line, column) = error
        .span()
        .map_or((1, 1), |span| line_and_column(text, span.start));
    let reason = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Problem::Syntax {
        line,
        column,
        reason,
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_and_column;

    #[test]
    fn line_and_column_counts_characters_from_one() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_and_column(text, 11), (2, 5));
        assert_eq!(line_and_column(text, 1000), (3, 1));
    }
}
