//! The configuration reference in Markdown, generated from the schema and the defaults: one
//! table per section (key | default | allowed | meaning), then the rules between keys.
//!
//! Generated rather than written so that it cannot drift from what the parser accepts; the
//! crate documentation and the README carry a copy (`REFERENCE.md`) that a test keeps current.

use std::fmt::Write as _;

use toml::Table;

use crate::parse::render;
use crate::print::section_tables;
use crate::schema::{self, SectionSpec};
use crate::{App, AppKind, Config};

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
     engine.drain_limit + port.queues * min(pool.cache / 2, 64)) + 2 * port.queues * \
     port.ring_size`, + `min(port.queues, engine.threads - port.queues) * swq.size` with \
     `[[stack.app]]` entries and fewer queues than threads: every buffer the engine can park at \
     once (each thread's cache with the buffers it holds for the other pools, its full software \
     queue, the packets it holds between rx and tx plus one more rx burst; each queue's full \
     receive and transmit rings; the full software transmit queues of the threads that relay \
     for the queue-less ones), so a thread always finds buffers for its next receive burst, even \
     at start when every ring fills up.",
    "`pool.low_watermark` is 0 or below the buffers of each queue's L1 pool (`(pool.buffers - \
     pool.buffers * pool.shared_percent / 100) / port.queues`), less `port.rx_descriptors` with \
     `port.driver = \"dpdk\"` (the receive ring holds those); `pool.shared_percent > 0` when \
     `engine.threads > port.queues`.",
    "`port.interface` names a Linux interface with `port.driver = \"afpacket\"` and is empty \
     with `\"uveth\"`.",
    "`port.driver = \"afpacket\"` or `\"pcap\"` needs `traffic.profile = \"none\"`: the \
     generator feeds uveth queues and DPDK ring devices only.",
    "`port.pcap_file` names the capture with `port.driver = \"pcap\"` and is empty with the \
     other drivers; `flowsteer check` and `run` also open it (exit 2 when it cannot be read).",
    "With `port.driver = \"dpdk\"`, `port.device` names the device exactly when \
     `traffic.profile = \"none\"`: with a profile the generator runs on a ring device the engine \
     creates (`net_ring_fs<n>`, one receive and one transmit ring of `port.rx_descriptors` and \
     `port.tx_descriptors` mbufs per queue, at most 16 queues), and `port.device` is empty.",
    "`[[stack.app]]` entries need `traffic.profile = \"none\"`: generated frames are not \
     connections.",
    "With `[[stack.app]]` entries and `port.queues < engine.threads`, `engine.balance = \
     \"software\"`: a thread without a receive queue gets connections only by handoff, which RSS \
     cannot do. It transmits on a transmit-only queue of the port (afpacket: a send socket of \
     its own; dpdk: a spare transmit queue when the device has one), else through the software \
     transmit queue of thread `t % port.queues`.",
    "With `port.driver = \"afpacket\"` or any `[[stack.app]]` entry, `pool.data_room >= 1514`, \
     a full Ethernet frame without FCS.",
    "Every `stack.app[i].threads` entry is `< engine.threads`.",
    "Two TCP apps (`tcp-echo`, `http`, `discard`, `tcp-proxy`) on the same `port`, or two \
     `udp-echo` apps on the same `port`, run on no common thread; a TCP and a UDP app may share a \
     port number.",
    "`stack.app[i].upstream` is present exactly when `stack.app[i].kind = \"tcp-proxy\"`.",
    "An IPv4 `upstream` lies inside `port.ipv4`/`port.ipv4_prefix`, is not `port.ipv4` and not \
     the subnet's broadcast address; an IPv6 `upstream` lies inside \
     `port.ipv6`/`port.ipv6_prefix` and is not `port.ipv6`: the stacks have no gateway, so an \
     off-link upstream could never be reached.",
    "`engine.balance = \"rss\"` with a `tcp-proxy` app needs `port.driver = \"uveth\"`: under \
     RSS balancing an outbound connection gets no flow rule; its source port is chosen so that \
     the port's software RSS (Toeplitz over `port.rss_key`, `port.reta_size`, `port.queues`) \
     sends the return packets to the connecting thread's queue; no other driver gives a hash \
     the configuration can count on (AF_PACKET's fanout is the kernel's own seeded flow hash, \
     which no source port can aim; a DPDK device's RSS is known only once the device is opened, \
     and many have none; a capture answers nothing).",
];

/// The text of [`crate::reference`].
pub(crate) fn markdown() -> String {
    let defaults = Config::default();
    let mut text = String::new();
    for (spec, table) in section_tables(&defaults) {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "### `[{}]`\n", spec.name);
        write_table(&mut text, &spec, table.ok().as_ref());
        for key in spec.keys {
            if let Some(entries) = key.entries {
                let _ = writeln!(
                    text,
                    "### `[[{}]]` entries\n\nErrors name an entry by its index: `{}[0].{}`.\n",
                    entries.name,
                    entries.name,
                    entries.keys.first().map_or("", |k| k.name)
                );
                write_table(&mut text, entries, entry_defaults(entries).as_ref());
            }
        }
    }
    text.push_str("### Rules between keys\n\n");
    for rule in RULES_BETWEEN_KEYS {
        let _ = writeln!(text, "- {rule}");
    }
    text
}

/// One `key | default | allowed | meaning` table; a required key's default reads `(required)`.
fn write_table(text: &mut String, spec: &SectionSpec, defaults: Option<&Table>) {
    text.push_str("| key | default | allowed | meaning |\n|---|---|---|---|\n");
    for key in spec.keys {
        let default = match defaults.and_then(|t| t.get(key.name)) {
            _ if key.required => String::from("(required)"),
            Some(value) => cell(&format!("`{}`", render(value))),
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

/// The optional keys' defaults of an array-of-tables entry: an entry holding only its required
/// keys, serialized.
fn entry_defaults(entries: &SectionSpec) -> Option<Table> {
    if entries.name == schema::APP.name {
        Table::try_from(App::new(AppKind::default(), 1)).ok()
    } else {
        None
    }
}

/// Text safe inside a Markdown table cell: `|` escaped, and outside code spans `[` and `]`
/// too, so that an example such as `"[2001:db8::2]:9000"` stays text and is not read as a link
/// (rustdoc would try to resolve it).
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => in_code = !in_code,
            '|' => out.push('\\'),
            '[' | ']' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cell_escapes_pipes_and_brackets_outside_code() {
        assert_eq!(
            cell("\"[::1]:80\" | `[[stack.app]]`"),
            "\"\\[::1\\]:80\" \\| `[[stack.app]]`"
        );
    }
}
