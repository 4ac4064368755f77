//! [`Config`] back to TOML: the effective configuration, every key in reference order, each
//! followed by a comment saying what it accepts.
//!
//! The values go through the same serde implementations the parser uses, so the text parses back
//! to an equal `Config` whenever the configuration is valid. Cost: one small serialization per
//! section; meant for `flowsteer check` and logs, not for a hot path.

use std::fmt::Write as _;

use toml::{Table, Value};

use crate::parse::render;
use crate::schema::{self, KeySpec, SectionSpec};
use crate::Config;

/// Comments start in this column when the `key = value` part is shorter, so they line up.
const COMMENT_COLUMN: usize = 28;

/// Every section of `config` with its serialized keys, in reference order.
///
/// A section fails to serialize only when it holds an integer beyond TOML's signed 64 bits, which
/// validation rejects; such a section is an `Err` with the serializer's reason.
pub(crate) fn section_tables(config: &Config) -> [(SectionSpec, Result<Table, String>); 9] {
    fn table<T: serde::Serialize>(section: &T) -> Result<Table, String> {
        Table::try_from(section).map_err(|e| e.to_string())
    }
    [
        (schema::ENGINE, table(&config.engine)),
        (schema::POOL, table(&config.pool)),
        (schema::FLOWTABLE, table(&config.flowtable)),
        (schema::SWQ, table(&config.swq)),
        (schema::PORT, table(&config.port)),
        (schema::STACK, table(&config.stack)),
        (schema::TRAFFIC, table(&config.traffic)),
        (schema::METRICS, table(&config.metrics)),
        (schema::FAULT, table(&config.fault)),
    ]
}

/// The text of [`Config::to_toml_string`].
pub(crate) fn to_toml(config: &Config) -> String {
    let mut text = String::from(
        "# flowsteer configuration: every key with its effective value; after each, what it accepts.\n",
    );
    for (spec, table) in section_tables(config) {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "\n[{}]", spec.name);
        match table {
            Ok(table) => {
                write_keys(&mut text, &spec, &table);
                // Arrays of tables come last: a `[[...]]` header ends the section's own keys.
                for key in spec.keys {
                    if let (Some(entries), Some(value)) = (key.entries, table.get(key.name)) {
                        write_entries(&mut text, spec.name, key, entries, value);
                    }
                }
            }
            Err(reason) => {
                let _ = writeln!(
                    text,
                    "# [{}] cannot be written as TOML: {reason}",
                    spec.name
                );
            }
        }
    }
    text
}

/// The plain keys of `spec` that `table` holds, one `key = value  # allowed` line each.
fn write_keys(text: &mut String, spec: &SectionSpec, table: &Table) {
    for key in spec.keys.iter().filter(|key| key.entries.is_none()) {
        if let Some(value) = table.get(key.name) {
            write_line(text, &format!("{} = {}", key.name, render(value)), key);
        }
    }
}

fn write_line(text: &mut String, assignment: &str, key: &KeySpec) {
    let _ = writeln!(
        text,
        "{assignment:<COMMENT_COLUMN$} # {}",
        key.allowed.describe()
    );
}

/// An array of tables: `key = []` when empty (so the key still shows), else one
/// `[[section.key]]` table per entry, its index in the header's comment as errors name it.
fn write_entries(
    text: &mut String,
    section: &str,
    key: &KeySpec,
    entries: &SectionSpec,
    value: &Value,
) {
    let tables: Vec<&Table> = value
        .as_array()
        .map(|array| array.iter().filter_map(Value::as_table).collect())
        .unwrap_or_default();
    if tables.is_empty() {
        write_line(text, &format!("{} = []", key.name), key);
        return;
    }
    for (i, table) in tables.into_iter().enumerate() {
        let header = format!("[[{section}.{}]]", key.name);
        let _ = writeln!(text, "\n{header:<COMMENT_COLUMN$} # {}[{i}]", entries.name);
        write_keys(text, entries, table);
    }
}
