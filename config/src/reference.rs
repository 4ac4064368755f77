//! The configuration reference in Markdown, generated from the schema and the defaults: one
//! table per section (key | default | allowed | meaning), then the rules between keys.
//!
//! Generated rather than written so that it cannot drift from what the parser accepts; the
//! crate documentation and the README carry a copy (`REFERENCE.md`) that a test keeps current.

use std::fmt::Write as _;

use crate::parse::render;
use crate::print::section_tables;
use crate::Config;

/// The rules [`Config::validate`] checks between keys, as the reference states them.
const RULES_BETWEEN_KEYS: &[&str] = &[
    "`port.queues <= engine.threads`; with `traffic.profile = \"fewer-queues\"`, \
     `port.queues < engine.threads` (threads without a queue receive only by handoff).",
    "`engine.cores` is empty or has exactly `engine.threads` entries.",
    "`engine.drain_limit <= swq.size`.",
    "`traffic.packet_size` >= 14 (Ethernet) + 20 (IPv4), or 40 (IPv6) when \
     `traffic.ipv6_share > 0`, + 20 (TCP), or 8 (UDP) when `traffic.udp_share = 1`, + 16 (the \
     generator's stamp); the default mix (IPv4, TCP) needs 70.",
    "`pool.data_room >= traffic.packet_size`.",
    "`traffic.port_base + engine.threads - 1 <= 65535`.",
    "`port.reta_size >= port.queues`, so every queue appears in the redirection table.",
    "`pool.buffers >= engine.threads * (pool.cache + swq.size + 2 * engine.burst + \
     engine.drain_limit) + 2 * port.queues * port.ring_size`: every buffer the engine can park \
     at once (each thread's cache, its full software queue, the packets it holds between rx and \
     tx plus one more rx burst; each queue's full receive and transmit rings), so a thread always \
     finds buffers for its next receive burst, even at start when every ring fills up.",
];

/// The text of [`crate::reference`].
pub(crate) fn markdown() -> String {
    let defaults = Config::default();
    let mut text = String::new();
    for (spec, table) in section_tables(&defaults) {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "### `[{}]`\n", spec.name);
        text.push_str("| key | default | allowed | meaning |\n|---|---|---|---|\n");
        for key in spec.keys {
            let default = match table.as_ref().ok().and_then(|t| t.get(key.name)) {
                Some(value) => format!("`{}`", cell(&render(value))),
                None => String::from("(none)"),
            };
            let _ = writeln!(
                text,
                "| `{}` | {default} | {} | {} |",
                key.name,
                cell(&key.allowed.describe()),
                cell(key.meaning)
            );
        }
        text.push('\n');
    }
    text.push_str("### Rules between keys\n\n");
    for rule in RULES_BETWEEN_KEYS {
        let _ = writeln!(text, "- {rule}");
    }
    text
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
