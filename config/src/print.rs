//! [`Config`] back to TOML: the effective configuration, every key in reference order, each
//! followed by a comment saying what it accepts.
//!
//! The values go through the same serde implementations the parser uses, so the text parses back
//! to an equal `Config` whenever the configuration is valid. Cost: one small serialization per
//! section; meant for `flowsteer check` and logs, not for a hot path.

use std::fmt::Write as _;

use toml::Table;

use crate::parse::render;
use crate::schema::{self, SectionSpec};
use crate::Config;

/// Comments start in this column when the `key = value` part is shorter, so they line up.
const COMMENT_COLUMN: usize = 28;

/// Every section of `config` with its serialized keys, in reference order.
///
/// A section fails to serialize only when it holds an integer beyond TOML's signed 64 bits, which
/// validation rejects; such a section is an `Err` with the serializer's reason.
pub(crate) fn section_tables(config: &Config) -> [(SectionSpec, Result<Table, String>); 7] {
    fn table<T: serde::Serialize>(section: &T) -> Result<Table, String> {
        Table::try_from(section).map_err(|e| e.to_string())
    }
    [
        (schema::ENGINE, table(&config.engine)),
        (schema::POOL, table(&config.pool)),
        (schema::FLOWTABLE, table(&config.flowtable)),
        (schema::SWQ, table(&config.swq)),
        (schema::PORT, table(&config.port)),
        (schema::TRAFFIC, table(&config.traffic)),
        (schema::METRICS, table(&config.metrics)),
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
                for key in spec.keys {
                    if let Some(value) = table.get(key.name) {
                        let assignment = format!("{} = {}", key.name, render(value));
                        let _ = writeln!(
                            text,
                            "{assignment:<COMMENT_COLUMN$} # {}",
                            key.allowed.describe()
                        );
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
