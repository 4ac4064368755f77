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
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use crate::error::{cut, Collector, ConfigError, Problem, MAX_VALUE};
use crate::schema::{self, path_segment, SectionSpec};
use crate::types::AppKind;
use crate::validate;
use crate::{App, Config, Stack};

/// Parses and validates `text`.
pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut out = Collector::default();
    let root = document(text, &mut out).map_err(ConfigError::single)?;

    let config = Config {
        engine: section(&root, &schema::ENGINE, &mut out),
        pool: section(&root, &schema::POOL, &mut out),
        flowtable: section(&root, &schema::FLOWTABLE, &mut out),
        swq: section(&root, &schema::SWQ, &mut out),
        port: section(&root, &schema::PORT, &mut out),
        stack: stack(&root, &mut out),
        traffic: section(&root, &schema::TRAFFIC, &mut out),
        metrics: section(&root, &schema::METRICS, &mut out),
        fault: section(&root, &schema::FAULT, &mut out),
    };
    let sections = schema::section_names();
    for key in root.keys() {
        if !sections.contains(&key.as_str()) {
            if out.full() {
                out.count_omitted();
                continue;
            }
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
        out.reject(spec.name, not_a_table(spec, value, out));
    }
    table
}

fn not_a_table(spec: &SectionSpec, value: &Value, out: &Collector) -> String {
    format!(
        "must be a table of keys ({}), got {}",
        spec.key_names().join(", "),
        shown(value, out)
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
        // A value holding a number beyond 64 bits (a placeholder now) is refused whatever the
        // key's type.
        let fits = !holds_out_of_range(value, out);
        match alone.try_into::<T>() {
            Ok(_) if fits => {
                accepted.insert(key.name.to_owned(), value.clone());
            }
            _ => out.reject(
                format!("{path}.{}", key.name),
                format!(
                    "must be {}, got {}",
                    key.allowed.describe(),
                    shown(value, out)
                ),
            ),
        }
    }
    for name in table.keys() {
        if spec.key(name).is_none() {
            if out.full() {
                out.count_omitted();
                continue;
            }
            let key_path = format!("{path}.{}", path_segment(name));
            let message = unknown_key(&spec.key_names(), schema::removed_key(&key_path));
            out.report(key_path, message);
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
            format!("must be {allowed}, got {}", shown(value, out)),
        );
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("{}[{i}]", spec.name);
            let Some(table) = entry.as_table() else {
                let message = not_a_table(spec, entry, out);
                out.reject(&path, message);
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

/// The unknown-key message, followed by why the key went when it is a removed one.
fn unknown_key(allowed: &[&str], removed: Option<&str>) -> String {
    let message = format!("unknown key (expected one of: {})", allowed.join(", "));
    match removed {
        Some(why) => format!("{message}; removed: {why}"),
        None => message,
    }
}

/// A TOML value as it would be written in the file.
pub(crate) fn render(value: &Value) -> String {
    value.to_string()
}

/// A TOML value as a message shows it: as written in the file (a number beyond 64 bits
/// included), cut when long.
fn shown(value: &Value, out: &Collector) -> String {
    let mut text = render(value);
    for (i, original) in out.out_of_range.iter().enumerate().rev() {
        text = text.replace(&render(&Value::String(out_of_range_marker(i))), original);
    }
    cut(&text, MAX_VALUE).into_owned()
}

/// What stands in the document for the `i`-th number too large for 64 bits: a string no file
/// holds in practice, which no key accepts (see [`holds_out_of_range`]).
fn out_of_range_marker(i: usize) -> String {
    format!("\u{FDD0}out-of-range-{i}\u{FDD0}")
}

/// `value` is, or holds, a placeholder of a number too large for 64 bits.
fn holds_out_of_range(value: &Value, out: &Collector) -> bool {
    if out.out_of_range.is_empty() {
        return false;
    }
    match value {
        Value::String(s) => s.starts_with("\u{FDD0}out-of-range-") && s.ends_with('\u{FDD0}'),
        Value::Array(items) => items.iter().any(|v| holds_out_of_range(v, out)),
        Value::Table(table) => table.values().any(|v| holds_out_of_range(v, out)),
        _ => false,
    }
}

/// The document as a table. TOML allows integers of any size and floats of any exponent, but a
/// value holds 64 bits: each number beyond that is replaced by a placeholder (remembered in
/// `out`), so that the key holding it is reported like any value of the wrong type, with its
/// path.
fn document(text: &str, out: &mut Collector) -> Result<Table, Problem> {
    let error = match text.parse::<Table>() {
        Ok(root) => return Ok(root),
        Err(error) => error,
    };
    let (tree, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // A real syntax error (the first one, as the table parser saw it).
        return Err(syntax_problem(text, &error));
    }
    let mut spans = Vec::new();
    out_of_range_in_table(tree.get_ref(), &mut spans);
    if spans.is_empty() {
        return Err(syntax_problem(text, &error));
    }
    spans.sort_by_key(|span| span.start);
    let mut replaced = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        replaced.push_str(&text[at..span.start]);
        let marker = out_of_range_marker(out.out_of_range.len());
        replaced.push_str(&render(&Value::String(marker)));
        out.out_of_range.push(text[span.clone()].to_owned());
        at = span.end;
    }
    replaced.push_str(&text[at..]);
    replaced
        .parse::<Table>()
        .map_err(|_| syntax_problem(text, &error))
}

fn out_of_range_in_table(table: &DeTable<'_>, spans: &mut Vec<Range<usize>>) {
    for value in table.values() {
        out_of_range_in(value.get_ref(), value.span(), spans);
    }
}

fn out_of_range_in(value: &DeValue<'_>, span: Range<usize>, spans: &mut Vec<Range<usize>>) {
    match value {
        DeValue::Integer(int) => {
            let digits = int.as_str().replace('_', "");
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits);
            if i64::from_str_radix(digits, int.radix()).is_err() {
                spans.push(span);
            }
        }
        DeValue::Float(float) => {
            // `inf` is a TOML float; `1e999` is one no f64 holds.
            let written = float.as_str().replace('_', "");
            if !written.contains("inf") && written.parse::<f64>().is_ok_and(f64::is_infinite) {
                spans.push(span);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter() {
                out_of_range_in(item.get_ref(), item.span(), spans);
            }
        }
        DeValue::Table(table) => out_of_range_in_table(table, spans),
        _ => {}
    }
}

fn syntax_problem(text: &str, error: &toml::de::Error) -> Problem {
    let (line, column) = error
        .span()
        .map_or((1, 1), |span| line_and_column(text, span.start));
    let duplicate = error.message().trim() == "duplicate key";
    let path = error.span().and_then(|span| {
        if duplicate {
            duplicate_path(text, span)
        } else {
            value_path(text, span.start)
        }
    });
    let reason = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let reason = match (&path, duplicate) {
        (Some(path), true) => format!("duplicate key {path}"),
        (Some(path), false) => format!("{reason} (the value of {path})"),
        (None, _) => reason,
    };
    Problem::Syntax {
        path,
        line,
        column,
        reason,
    }
}

/// The path of the key (or table header) at `span` that a document defines twice: the table it
/// is in (the innermost inline table around it, else the last header before it) and the key as
/// written on its line.
fn duplicate_path(text: &str, span: Range<usize>) -> Option<String> {
    let line_start = text[..span.start].rfind('\n').map_or(0, |nl| nl + 1);
    let before = text.get(line_start..span.end)?;
    let trimmed = before.trim_start();
    if let Some(header) = trimmed.strip_prefix('[') {
        // `[a.b]` or `[[a.b]]`: the header names the whole path.
        return Some(dotted(header.trim_start_matches('[')));
    }
    let (tree, _) = DeTable::parse_recoverable(text);
    let mut found = Container::default();
    containers(tree.get_ref(), "", text, span.start, &mut found);
    let table = found.inline.or(found.header.map(|(path, _)| path));
    // The key as written: after the last `{` or `,` of the line (inline tables), else the line.
    let key_start = before.rfind(['{', ',']).map_or(0, |i| i + 1);
    let key = dotted(&before[key_start..]);
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key,
    })
}

/// The path of the key whose value holds byte `offset` (a value the parser could not read).
fn value_path(text: &str, offset: usize) -> Option<String> {
    let (tree, _) = DeTable::parse_recoverable(text);
    let mut found = None;
    values_at(tree.get_ref(), "", text, offset, &mut found);
    found
}

fn values_at(
    table: &DeTable<'_>,
    path: &str,
    text: &str,
    offset: usize,
    found: &mut Option<String>,
) {
    for (key, value) in table.iter() {
        let child = child_path(path, key.get_ref());
        value_at(value.get_ref(), value.span(), &child, text, offset, found);
    }
}

/// The key path of `key` inside the table at `path` ("" for the document).
fn child_path(path: &str, key: &str) -> String {
    let segment = crate::schema::path_segment(key);
    if path.is_empty() {
        segment
    } else {
        format!("{path}.{segment}")
    }
}

fn value_at(
    value: &DeValue<'_>,
    span: Range<usize>,
    path: &str,
    text: &str,
    offset: usize,
    found: &mut Option<String>,
) {
    let holds = span.start <= offset && offset <= span.end;
    match value {
        // A header table (`[a]`) spans only its header: look inside it whatever the offset.
        DeValue::Table(table) => {
            if holds && text.get(span.clone()).is_some_and(|t| t.starts_with('{')) {
                *found = Some(path.to_owned());
            }
            values_at(table, path, text, offset, found);
        }
        DeValue::Array(items) => {
            if holds && text.get(span.clone()).is_some_and(|t| !t.starts_with("[[")) {
                *found = Some(path.to_owned());
            }
            for (i, item) in items.iter().enumerate() {
                let child = format!("{path}[{i}]");
                value_at(item.get_ref(), item.span(), &child, text, offset, found);
            }
        }
        _ if holds => *found = Some(path.to_owned()),
        _ => {}
    }
}

/// A dotted key as written (`a . "b c"`), spaces around the dots removed, cut when long.
fn dotted(key: &str) -> String {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quote = None;
    for c in key.chars() {
        match (quote, c) {
            (None, '.') => parts.push(std::mem::take(&mut part)),
            (None, '"' | '\'') => {
                quote = Some(c);
                part.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                part.push(c);
            }
            _ => part.push(c),
        }
    }
    parts.push(part);
    let joined = parts.iter().map(|p| p.trim()).collect::<Vec<_>>().join(".");
    cut(&joined, MAX_VALUE).into_owned()
}

#[derive(Default)]
struct Container {
    /// The innermost inline table holding the offset.
    inline: Option<String>,
    /// The table whose header is the last one before the offset, with the header's start.
    header: Option<(String, usize)>,
}

fn containers(table: &DeTable<'_>, path: &str, text: &str, offset: usize, found: &mut Container) {
    for (key, value) in table.iter() {
        let child = child_path(path, key.get_ref());
        container_of(value.get_ref(), value.span(), &child, text, offset, found);
    }
}

fn container_of(
    value: &DeValue<'_>,
    span: Range<usize>,
    path: &str,
    text: &str,
    offset: usize,
    found: &mut Container,
) {
    let written = text.get(span.clone()).unwrap_or("");
    match value {
        DeValue::Table(table) => {
            if written.starts_with('{') && span.contains(&offset) {
                found.inline = Some(path.to_owned());
            } else if written.starts_with('[')
                && span.start <= offset
                && found.header.as_ref().is_none_or(|(_, at)| *at < span.start)
            {
                found.header = Some((path.to_owned(), span.start));
            }
            containers(table, path, text, offset, found);
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let child = format!("{path}[{i}]");
                container_of(item.get_ref(), item.span(), &child, text, offset, found);
            }
        }
        _ => {}
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
