//! Listen rules of the bucketized table: a small open-addressed array under one sequence lock.
//!
//! Listen rules change rarely (a socket starts or stops listening, a thread exits) and are few, so
//! one [`Version`] guards the whole array: a change makes every concurrent listen lookup retry once,
//! which costs nothing measurable at that rate, and a lookup validates one version instead of one
//! per slot. Lookups take no lock and write nothing (see `seqlock` for the protocol and its
//! memory-ordering argument); writers serialize on a mutex that readers never touch.
//!
//! Layout: `slots` (a power of two, at least twice the rule limit, so a probe always ends on an
//! empty slot) of three key words and the sorted owners inline, all atomics, no pointer: nothing is
//! ever freed while a reader may hold it, so no reclamation scheme is needed. Slots are placed by
//! linear probing on (protocol, port) only, so the (ip, port) rule and the (any, port) rule a flow
//! can match sit in the same probe run, and one scan from the home slot to the first empty slot
//! finds both. Deletion shifts the run back (no tombstones), so runs stay short.
//!
//! Port filter: one bit per (protocol, port), set while at least one rule (any address or one
//! address) exists for that port: 65 536 bits = 8 KiB per protocol, so the words a burst touches
//! stay in L1/L2. A lookup reads the flow's bit first and answers `Miss` without the version or
//! the slots when it is clear, which is what an exact miss on a port nobody listens on costs. The
//! filter may say "maybe" for a port without rules (briefly, while its last rule is being
//! removed), never "no" for a port with one. Ordering (writers serialize on the mutex, so the
//! filter words change only under it; the bit changes are read-modify-writes that leave the other
//! ports' bits of the word alone; the reader's filter load is `Acquire`):
//!
//! - add: the bit is set (`Relaxed`) *before* the version lock is taken and the rule published,
//!   so the set is sequenced before the version's `Release` store. A reader that validated a read
//!   showing the rule loaded that store with `Acquire`, so the set happens before its later
//!   filter loads: once a reader has seen a rule, it sees the bit (coherence) until the rule's
//!   removal clears it. An add that returned before a lookup began (happens before it) is
//!   likewise always seen.
//! - remove: the bit is cleared (`Release`) only *after* the last rule of the port has been
//!   unpublished and the version released. A reader whose `Acquire` filter load reads the cleared
//!   bit therefore also sees the removal: answering `Miss` orders it after the removal, and any
//!   later read of the slots sees the version the removal left (or a later one), never the rule.
//!   A reader that still reads the set bit falls through to the slots, which the seqlock makes
//!   exact.
//!
//! On x86-64 the `Acquire` load is a plain load: the filter costs one L1 load and a branch.
//!
//! Limits: at most `min(capacity, LISTEN_RULES_MAX)` rules and [`MAX_OWNERS`] owners per rule (the
//! engine runs at most 64 threads); beyond either, `listen_add` fails with [`TableFull`].
//!
//! Cost: a lookup on a port without rules is one load of a filter word (no version, no fence).
//! Otherwise O(run length), typically one or two slots, in a structure that stays in cache, plus
//! the filter load. Changes O(run length + owners) and one filter read-modify-write when a port
//! gains its first or loses its last rule; `remove_owner` O(slots).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::key::{FlowKey, ListenKey, Proto, ThreadId};
use crate::lookup::{Lookup, OwnerSet};
use crate::seqlock::{read_fence, spin, AtomicU64, Version};
use crate::table::TableFull;

/// Most listen rules a table holds whatever its exact capacity (listen rules are per listening
/// socket: a few per thread).
pub(crate) const LISTEN_RULES_MAX: usize = 4096;
/// Most owners of one listen rule.
pub(crate) const MAX_OWNERS: usize = 64;
const OWNER_WORDS: usize = MAX_OWNERS / 4;
/// Filter words per protocol: one bit per port.
const PORT_WORDS: usize = (u16::MAX as usize + 1) / 64;

// Meta word: bit 0 used, bit 1 any-address, bit 2 IPv6, bits 8..16 protocol, bits 16..32 port,
// bits 32..40 owner count.
const META_USED: u64 = 1;
const META_ANY: u64 = 1 << 1;
const META_V6: u64 = 1 << 2;
const META_PROTO_SHIFT: u32 = 8;
const META_PORT_SHIFT: u32 = 16;
const META_COUNT_SHIFT: u32 = 32;
/// Protocol and port: what places a rule and what every rule a flow can match shares.
const META_PLACE_MASK: u64 = 0xFFFF_FF00;

struct Slot {
    meta: AtomicU64,
    /// Local address as in [`FlowKey`] words 0 and 1 (IPv4 mapped); zero for any-address rules.
    ip: [AtomicU64; 2],
    /// Owners, ascending, four per word (owner `i` in bits `16 * (i % 4)` of word `i / 4`).
    owners: [AtomicU64; OWNER_WORDS],
}

impl Slot {
    fn new() -> Self {
        Slot {
            meta: AtomicU64::new(0),
            ip: std::array::from_fn(|_| AtomicU64::new(0)),
            owners: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn owner(&self, index: usize) -> ThreadId {
        (self.owners[index / 4].load(Ordering::Relaxed) >> (16 * (index % 4))) as ThreadId
    }

    /// Writer only (listen version held).
    fn copy_from(&self, other: &Slot) {
        self.ip[0].store(other.ip[0].load(Ordering::Relaxed), Ordering::Relaxed);
        self.ip[1].store(other.ip[1].load(Ordering::Relaxed), Ordering::Relaxed);
        for (to, from) in self.owners.iter().zip(&other.owners) {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.meta
            .store(other.meta.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// The encoded form of a rule: meta without used bit and count, and the address words.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Encoded {
    meta: u64,
    ip: [u64; 2],
}

fn place_meta(proto: Proto, port: u16) -> u64 {
    (u64::from(proto.number()) << META_PROTO_SHIFT) | (u64::from(port) << META_PORT_SHIFT)
}

fn encode(rule: &ListenKey) -> Encoded {
    let place = place_meta(rule.proto, rule.port);
    match rule.ip {
        None => Encoded {
            meta: place | META_ANY,
            ip: [0, 0],
        },
        Some(IpAddr::V4(ip)) => {
            // The same words FlowKey::from_v4_bytes stores for a local IPv4 address.
            let probe = FlowKey::from_v4_bytes(rule.proto, ip.octets(), 0, [0; 4], 0);
            Encoded {
                meta: place,
                ip: [probe.words()[0], probe.words()[1]],
            }
        }
        Some(IpAddr::V6(ip)) => {
            let bits = u128::from(ip);
            Encoded {
                meta: place | META_V6,
                ip: [(bits >> 64) as u64, bits as u64],
            }
        }
    }
}

struct Writers {
    /// The authoritative rules; the slot array mirrors it for readers.
    rules: HashMap<ListenKey, OwnerSet>,
    /// Rules per (protocol, port), for the port filter: its bit is set while this is non-zero.
    port_rules: HashMap<(Proto, u16), usize>,
}

/// Index of the port filter word of `port` and its bit in that word.
#[inline]
fn port_bit(proto: Proto, port: u16) -> (usize, u64) {
    let protocol_base = match proto {
        Proto::Tcp => 0,
        Proto::Udp => PORT_WORDS,
    };
    (protocol_base + usize::from(port) / 64, 1 << (port % 64))
}

/// Listen rules with lock-free lookups. See the module documentation.
pub(crate) struct ListenTable {
    version: Version,
    slots: Box<[Slot]>,
    mask: usize,
    limit: usize,
    /// The port filter: TCP ports in words `0..PORT_WORDS`, UDP ports after them (see the module
    /// documentation for the ordering that keeps it exact).
    ports: Box<[AtomicU64]>,
    writers: Mutex<Writers>,
}

impl ListenTable {
    pub(crate) fn new(capacity: usize) -> Self {
        let limit = capacity.min(LISTEN_RULES_MAX);
        let slots = (limit * 2).next_power_of_two().max(2);
        ListenTable {
            version: Version::new(),
            slots: (0..slots).map(|_| Slot::new()).collect(),
            mask: slots - 1,
            limit,
            ports: (0..2 * PORT_WORDS).map(|_| AtomicU64::new(0)).collect(),
            writers: Mutex::new(Writers {
                rules: HashMap::new(),
                port_rules: HashMap::new(),
            }),
        }
    }

    /// Rules this table holds at most. Only a test reads it (that a huge capacity is cut to
    /// `LISTEN_RULES_MAX`); the writers compare against the field.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn home(&self, meta: u64) -> usize {
        // Fibonacci hashing of (protocol, port): rules are local sockets, not chosen by peers.
        ((meta & META_PLACE_MASK).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, Writers> {
        // Writers leave the mirror consistent before any step that could panic, so a poisoned
        // lock still guards consistent data.
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False when no rule exists for the port (see the module documentation for why a clear bit
    /// is never wrong); true when one may.
    #[inline]
    fn port_may_listen(&self, proto: Proto, port: u16) -> bool {
        let (word, bit) = port_bit(proto, port);
        self.ports[word].load(Ordering::Acquire) & bit != 0
    }

    /// Writer only (mutex held): counts a new rule on `rule`'s port, setting the filter bit for
    /// the port's first. Call before publishing the rule.
    fn count_port_rule(&self, writers: &mut Writers, rule: &ListenKey) {
        let count = writers
            .port_rules
            .entry((rule.proto, rule.port))
            .or_insert(0);
        *count += 1;
        if *count == 1 {
            let (word, bit) = port_bit(rule.proto, rule.port);
            self.ports[word].fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Writer only (mutex held): uncounts a removed rule, clearing the filter bit with the port's
    /// last. Call after the rule is unpublished and the version released.
    fn uncount_port_rule(&self, writers: &mut Writers, rule: &ListenKey) {
        let place = (rule.proto, rule.port);
        let Some(count) = writers.port_rules.get_mut(&place) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            writers.port_rules.remove(&place);
            let (word, bit) = port_bit(rule.proto, rule.port);
            self.ports[word].fetch_and(!bit, Ordering::Release);
        }
    }

    /// The listen match of a flow whose exact lookup missed: (ip, port), then (any, port), or miss.
    #[inline]
    pub(crate) fn lookup(&self, key: &FlowKey, hash: u64) -> Lookup {
        if self.port_may_listen(key.proto(), key.local_port()) {
            self.lookup_rules(key, hash)
        } else {
            Lookup::Miss
        }
    }

    /// [`ListenTable::lookup`] past the port filter. Kept out of line: the filter, inlined into
    /// the exact lookup's loop, ends most misses in a few instructions.
    #[inline(never)]
    fn lookup_rules(&self, key: &FlowKey, hash: u64) -> Lookup {
        let words = key.words();
        let flow_place = place_meta(key.proto(), key.local_port());
        let flow_v6 = if key.is_ipv6() { META_V6 } else { 0 };
        let home = self.home(flow_place);
        let mut round = 0u32;
        loop {
            let Some(begun) = self.version.read_begin() else {
                spin(round);
                round = round.saturating_add(1);
                continue;
            };
            let mut on_ip = None;
            let mut any = None;
            let mut index = home;
            for _ in 0..self.slots.len() {
                let slot = &self.slots[index];
                let meta = slot.meta.load(Ordering::Relaxed);
                if meta & META_USED == 0 {
                    break;
                }
                if meta & META_PLACE_MASK == flow_place {
                    if meta & META_ANY != 0 {
                        any = Some((index, meta));
                    } else if meta & META_V6 == flow_v6
                        && slot.ip[0].load(Ordering::Relaxed) == words[0]
                        && slot.ip[1].load(Ordering::Relaxed) == words[1]
                    {
                        on_ip = Some((index, meta));
                        break;
                    }
                }
                index = (index + 1) & self.mask;
            }
            let result = match (on_ip, any) {
                (Some((index, meta)), _) => self.pick(index, meta, hash).map(Lookup::Listen),
                (None, Some((index, meta))) => self.pick(index, meta, hash).map(Lookup::ListenAny),
                (None, None) => None,
            };
            read_fence();
            if self.version.unchanged_since(begun) {
                return result.unwrap_or(Lookup::Miss);
            }
            spin(round);
            round = round.saturating_add(1);
        }
    }

    /// [`crate::pick_owner`] over the slot's inline owners (same multiply-shift, so the same pick
    /// as an [`OwnerSet`] of the same owners).
    #[inline]
    fn pick(&self, index: usize, meta: u64, hash: u64) -> Option<ThreadId> {
        // A racing read may see any count; clamp so the index stays in bounds until validation
        // rejects it.
        let count = ((meta >> META_COUNT_SHIFT) as usize & 0xFF).min(MAX_OWNERS);
        if count == 0 {
            return None;
        }
        let pick = ((u128::from(hash) * count as u128) >> 64) as usize;
        Some(self.slots[index].owner(pick))
    }

    /// Finds the slot of `rule`; writer only.
    fn find(&self, rule: Encoded) -> Option<usize> {
        let mut index = self.home(rule.meta);
        for _ in 0..self.slots.len() {
            let slot = &self.slots[index];
            let meta = slot.meta.load(Ordering::Relaxed);
            if meta & META_USED == 0 {
                return None;
            }
            if meta & (META_PLACE_MASK | META_ANY | META_V6) == rule.meta
                && slot.ip[0].load(Ordering::Relaxed) == rule.ip[0]
                && slot.ip[1].load(Ordering::Relaxed) == rule.ip[1]
            {
                return Some(index);
            }
            index = (index + 1) & self.mask;
        }
        None
    }

    /// Writes `owners` into the slot of `rule` (a new slot at the end of its run if absent).
    /// Called with the writer mutex and the version held.
    fn publish(&self, rule: Encoded, owners: &OwnerSet) {
        let index = self.find(rule).unwrap_or_else(|| {
            let mut index = self.home(rule.meta);
            while self.slots[index].meta.load(Ordering::Relaxed) & META_USED != 0 {
                index = (index + 1) & self.mask;
            }
            index
        });
        let slot = &self.slots[index];
        slot.ip[0].store(rule.ip[0], Ordering::Relaxed);
        slot.ip[1].store(rule.ip[1], Ordering::Relaxed);
        let sorted = owners.as_slice();
        for (word_index, word) in slot.owners.iter().enumerate() {
            let packed = sorted
                .iter()
                .skip(word_index * 4)
                .take(4)
                .enumerate()
                .fold(0u64, |acc, (lane, owner)| {
                    acc | (u64::from(*owner) << (16 * lane))
                });
            word.store(packed, Ordering::Relaxed);
        }
        slot.meta.store(
            rule.meta | META_USED | ((sorted.len() as u64) << META_COUNT_SHIFT),
            Ordering::Relaxed,
        );
    }

    /// Removes the slot of `rule` and shifts its run back so every rule stays reachable from its
    /// home. Called with the writer mutex and the version held.
    fn unpublish(&self, rule: Encoded) {
        let Some(mut hole) = self.find(rule) else {
            return;
        };
        let mut next = hole;
        loop {
            next = (next + 1) & self.mask;
            let meta = self.slots[next].meta.load(Ordering::Relaxed);
            if meta & META_USED == 0 {
                break;
            }
            let home = self.home(meta);
            // The entry at `next` may fill the hole if its home is not cyclically in (hole, next].
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots[hole].copy_from(&self.slots[next]);
                hole = next;
            }
        }
        self.slots[hole].meta.store(0, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull> {
        let mut writers = self.writers();
        let encoded = encode(&rule);
        let is_new = !writers.rules.contains_key(&rule);
        if is_new && writers.rules.len() >= self.limit {
            return Err(TableFull::rules(self.limit));
        }
        if is_new {
            // A new rule is always published below (its owner set is empty, so neither early
            // return applies). Counted before publishing: see the module documentation.
            self.count_port_rule(&mut writers, &rule);
        }
        let owners = writers.rules.entry(rule).or_default();
        if owners.contains(owner) {
            return Ok(());
        }
        if owners.len() >= MAX_OWNERS {
            return Err(TableFull::rules(MAX_OWNERS));
        }
        owners.insert(owner);
        let _guard = self.version.lock();
        self.publish(encoded, owners);
        Ok(())
    }

    pub(crate) fn remove(&self, rule: &ListenKey, owner: ThreadId) -> bool {
        let mut writers = self.writers();
        let Some(owners) = writers.rules.get_mut(rule) else {
            return false;
        };
        if !owners.remove(owner) {
            return false;
        }
        let encoded = encode(rule);
        let guard = self.version.lock();
        if owners.is_empty() {
            writers.rules.remove(rule);
            self.unpublish(encoded);
            // After the release: see the module documentation.
            drop(guard);
            self.uncount_port_rule(&mut writers, rule);
        } else {
            self.publish(encoded, owners);
        }
        true
    }

    /// Removes `owner` from every rule that has another owner; returns how many rules it was
    /// removed from and how many it alone owns (those stay).
    pub(crate) fn withdraw_owner(&self, owner: ThreadId) -> (usize, usize) {
        let mut writers = self.writers();
        let (mut withdrawn, mut kept) = (0, 0);
        let _guard = self.version.lock();
        for (rule, owners) in writers.rules.iter_mut() {
            if !owners.contains(owner) {
                continue;
            }
            if owners.len() == 1 {
                kept += 1;
            } else {
                owners.remove(owner);
                withdrawn += 1;
                self.publish(encode(rule), owners);
            }
        }
        (withdrawn, kept)
    }

    /// Removes `owner` from every rule; returns how many rules it was removed from.
    pub(crate) fn remove_owner(&self, owner: ThreadId) -> usize {
        let mut writers = self.writers();
        let mut removed = 0;
        let mut emptied = Vec::new();
        let guard = self.version.lock();
        for (rule, owners) in writers.rules.iter_mut() {
            if owners.remove(owner) {
                removed += 1;
                if owners.is_empty() {
                    emptied.push(*rule);
                } else {
                    self.publish(encode(rule), owners);
                }
            }
        }
        for rule in &emptied {
            writers.rules.remove(rule);
            self.unpublish(encode(rule));
        }
        // After the release: see the module documentation.
        drop(guard);
        for rule in &emptied {
            self.uncount_port_rule(&mut writers, rule);
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.writers().rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn flow(port: u16, remote: u8) -> FlowKey {
        FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::new(198, 18, 0, 1),
            port,
            Ipv4Addr::new(10, 0, 0, remote),
            1000,
        )
    }

    #[test]
    fn deleting_inside_a_run_keeps_every_rule_reachable() {
        // 16 slots, 8 rules on many ports: runs form and are cut in the middle by deletions.
        let table = ListenTable::new(8);
        let rules: Vec<ListenKey> = (0..8)
            .map(|i| ListenKey::any_ip(Proto::Tcp, 100 + i))
            .collect();
        for (i, rule) in rules.iter().enumerate() {
            table.add(*rule, i as ThreadId).unwrap();
        }
        for removed in [3usize, 0, 6] {
            assert!(table.remove(&rules[removed], removed as ThreadId));
        }
        for (i, rule) in rules.iter().enumerate() {
            let expected = if [3, 0, 6].contains(&i) {
                Lookup::Miss
            } else {
                Lookup::ListenAny(i as ThreadId)
            };
            assert_eq!(table.lookup(&flow(rule.port, 1), 0), expected, "rule {i}");
        }
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn port_filter_is_set_exactly_while_a_port_has_rules() {
        let table = ListenTable::new(64);
        let local = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let on_ip = ListenKey::on_ip(Proto::Tcp, local, 8000);
        let any = ListenKey::any_ip(Proto::Tcp, 8000);
        let bits = |table: &ListenTable| {
            [(Proto::Tcp, 8000), (Proto::Udp, 8000), (Proto::Tcp, 8001)]
                .map(|(proto, port)| table.port_may_listen(proto, port))
        };
        assert_eq!(bits(&table), [false; 3]);
        table.add(on_ip, 1).unwrap();
        table.add(on_ip, 2).unwrap();
        table.add(any, 3).unwrap();
        // Same protocol and port only: UDP 8000 and TCP 8001 stay clear.
        assert_eq!(bits(&table), [true, false, false]);
        assert!(table.remove(&any, 3));
        assert!(table.remove(&on_ip, 1));
        assert_eq!(bits(&table), [true, false, false], "one rule left");
        assert_eq!(table.lookup(&flow(8000, 1), 0), Lookup::Listen(2));
        assert!(table.remove(&on_ip, 2));
        assert_eq!(bits(&table), [false; 3]);
        assert_eq!(table.lookup(&flow(8000, 1), 0), Lookup::Miss);
        // remove_owner clears the bits of the ports it empties and keeps the others.
        table.add(any, 4).unwrap();
        table.add(ListenKey::any_ip(Proto::Tcp, 8001), 4).unwrap();
        table.add(ListenKey::any_ip(Proto::Tcp, 8001), 5).unwrap();
        table.add(ListenKey::any_ip(Proto::Udp, 8000), 4).unwrap();
        assert_eq!(bits(&table), [true; 3]);
        assert_eq!(table.remove_owner(4), 3);
        assert_eq!(bits(&table), [false, false, true]);
        // Failed adds leave no bit behind; the extreme ports have bits of their own.
        let full = ListenTable::new(1);
        full.add(ListenKey::any_ip(Proto::Udp, 0), 1).unwrap();
        assert!(full
            .add(ListenKey::any_ip(Proto::Udp, u16::MAX), 1)
            .is_err());
        assert!(full.port_may_listen(Proto::Udp, 0));
        assert!(!full.port_may_listen(Proto::Udp, u16::MAX));
        assert!(!full.port_may_listen(Proto::Tcp, 0));
    }

    /// A reader must always find a rule that stays installed, while a writer adds and removes
    /// other rules on the same port (its count goes 1 → 2 → 1) and on ports that share its filter
    /// word (their bits are set and cleared next to its bit).
    #[test]
    fn a_standing_rule_is_never_filtered_out() {
        const ROUNDS: u32 = if cfg!(miri) { 20 } else { 20_000 };
        let table = ListenTable::new(64);
        let standing = ListenKey::on_ip(Proto::Tcp, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 130);
        table.add(standing, 7).unwrap();
        let churn = [
            ListenKey::any_ip(Proto::Tcp, 130),
            ListenKey::any_ip(Proto::Tcp, 129),
            ListenKey::any_ip(Proto::Tcp, 131),
            ListenKey::on_ip(Proto::Tcp, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 130),
        ];
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let key = flow(130, 9);
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads < 100 {
                    assert_eq!(table.lookup(&key, 0), Lookup::Listen(7), "read {reads}");
                    reads += 1;
                }
            });
            for round in 0..ROUNDS {
                let rule = churn[round as usize % churn.len()];
                table.add(rule, 1).unwrap();
                assert!(table.remove(&rule, 1));
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap();
        });
        assert!(table.port_may_listen(Proto::Tcp, 130));
        assert!(!table.port_may_listen(Proto::Tcp, 129));
        assert!(!table.port_may_listen(Proto::Tcp, 131));
    }

    #[test]
    fn owner_limit_and_rule_limit_are_clear_errors() {
        let table = ListenTable::new(2);
        let rule = ListenKey::any_ip(Proto::Udp, 53);
        for owner in 0..MAX_OWNERS as ThreadId {
            table.add(rule, owner).unwrap();
        }
        assert_eq!(table.add(rule, 999), Err(TableFull::rules(MAX_OWNERS)));
        // Every owner is reachable by some hash.
        let key = FlowKey::v4(Proto::Udp, Ipv4Addr::LOCALHOST, 53, Ipv4Addr::LOCALHOST, 9);
        let step = u64::MAX / MAX_OWNERS as u64;
        for owner in 0..MAX_OWNERS as u64 {
            assert_eq!(
                table.lookup(&key, owner * step + step / 2),
                Lookup::ListenAny(owner as ThreadId)
            );
        }
        table.add(ListenKey::any_ip(Proto::Udp, 54), 1).unwrap();
        assert_eq!(
            table.add(ListenKey::any_ip(Proto::Udp, 55), 1),
            Err(TableFull::rules(2))
        );
        assert_eq!(ListenTable::new(1 << 30).limit(), LISTEN_RULES_MAX);
    }
}
