//! The bridge's forwarding database: a bounded MAC → port table with ageing.
//!
//! Dynamic entries are learned from source addresses and expire `ageing` after they were last
//! seen (as the Linux bridge's `ageing_time`); static entries (the addresses of the bridge's
//! own uveth ports) never expire and are never evicted. When the table is full, learning a new
//! address first removes the expired entries and then, if still full, evicts the least recently
//! seen dynamic entry, counted.
//!
//! An index ordered by last-seen time sits next to the hash map, so expiry and eviction take the
//! oldest entry in O(log n) instead of scanning. The hash map keeps the standard library's keyed
//! SipHash: source addresses come from the peers, and a keyed hash gives a flood of chosen
//! addresses no way to collide into one bucket.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::VBridgeError;
use super::stats::{set_single_writer, TableCounters};
use super::{MacAddr, PortId};

/// Most entries a table may be configured for.
pub const MAX_TABLE_CAPACITY: usize = 1 << 20;

/// Monotonic time in nanoseconds since the bridge was created (u64 nanoseconds span 584 years).
type Stamp = u64;

fn stamp(now: Duration) -> Stamp {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    port: PortId,
    /// `None` for a static entry.
    last_seen: Option<Stamp>,
}

/// What [`MacTable::learn`] did with a source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new dynamic entry.
    New,
    /// The address was already known on this port; its age was reset.
    Refreshed,
    /// The address was known on another port (a station moved); it now points here.
    Moved {
        /// The port the address pointed to before.
        from: PortId,
    },
    /// The address is a static entry; static entries are not moved by traffic.
    Static,
    /// The table is full of static entries; the address was not learned (counted).
    NotLearned,
}

/// A bounded MAC address → port table with ageing. See the module documentation.
///
/// Owned by the bridge (`&mut self` methods, no internal locking). Its counters are published
/// with single-writer relaxed stores so that another thread can read them while it works.
pub struct MacTable {
    entries: HashMap<MacAddr, Entry>,
    /// Dynamic entries by (last seen, address), oldest first; static entries are not in it.
    by_age: BTreeSet<(Stamp, MacAddr)>,
    capacity: usize,
    ageing: Stamp,
    counters: Arc<TableCounters>,
}

impl MacTable {
    /// An empty table of at most `capacity` entries whose dynamic entries expire `ageing`
    /// after they were last seen.
    ///
    /// Errors: `capacity` not in `1..=MAX_TABLE_CAPACITY`, or a zero `ageing`.
    pub fn new(capacity: usize, ageing: Duration) -> Result<MacTable, VBridgeError> {
        if capacity == 0 || capacity > MAX_TABLE_CAPACITY {
            return Err(VBridgeError::TableCapacity { capacity });
        }
        if ageing.is_zero() {
            return Err(VBridgeError::ZeroAgeing);
        }
        Ok(MacTable {
            // Grows as addresses are learned; the bound is enforced by `learn`, not by the map.
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            capacity,
            ageing: stamp(ageing),
            counters: Arc::new(TableCounters::default()),
        })
    }

    /// Most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries now, static and dynamic (expired ones that were not yet swept included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The age after which a dynamic entry expires.
    pub fn ageing(&self) -> Duration {
        Duration::from_nanos(self.ageing)
    }

    /// Records that `mac` was seen as a source on `port` at `now` (time since the bridge's start).
    ///
    /// Multicast and zero addresses are the caller's to refuse: a table entry for them would
    /// never be used, since multicast destinations are flooded.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Duration) -> Learned {
        let now = stamp(now);
        let outcome = match self.entries.get_mut(&mac) {
            Some(Entry {
                last_seen: None, ..
            }) => Learned::Static,
            Some(entry) => {
                let previous = entry.port;
                if let Some(seen) = entry.last_seen.replace(now) {
                    self.by_age.remove(&(seen, mac));
                }
                entry.port = port;
                self.by_age.insert((now, mac));
                if previous == port {
                    Learned::Refreshed
                } else {
                    self.counters.moved.add();
                    Learned::Moved { from: previous }
                }
            }
            None => {
                if self.entries.len() >= self.capacity && !self.make_room(now) {
                    self.counters.not_learned.add();
                    return Learned::NotLearned;
                }
                self.entries.insert(
                    mac,
                    Entry {
                        port,
                        last_seen: Some(now),
                    },
                );
                self.by_age.insert((now, mac));
                self.counters.learned.add();
                Learned::New
            }
        };
        self.publish_sizes();
        outcome
    }

    /// The port `mac` was last seen on, if it is in the table and not expired at `now`. An
    /// expired entry found here is removed (counted as aged out).
    pub fn lookup(&mut self, mac: &MacAddr, now: Duration) -> Option<PortId> {
        let now = stamp(now);
        let entry = *self.entries.get(mac)?;
        match entry.last_seen {
            Some(seen) if self.expired(seen, now) => {
                self.entries.remove(mac);
                self.by_age.remove(&(seen, *mac));
                self.counters.aged_out.add();
                self.publish_sizes();
                None
            }
            _ => Some(entry.port),
        }
    }

    /// Installs `mac` on `port` for good (no ageing, no eviction), replacing a dynamic entry
    /// for the same address.
    ///
    /// Errors: the address is already static on another port, or the table is full of static
    /// entries.
    pub fn add_static(&mut self, mac: MacAddr, port: PortId) -> Result<(), VBridgeError> {
        match self.entries.get(&mac).copied() {
            Some(Entry {
                port: existing,
                last_seen: None,
            }) => {
                return if existing == port {
                    Ok(())
                } else {
                    Err(VBridgeError::StaticConflict {
                        mac,
                        port: existing,
                    })
                };
            }
            Some(Entry {
                last_seen: Some(seen),
                ..
            }) => {
                self.by_age.remove(&(seen, mac));
            }
            None => {
                if self.entries.len() >= self.capacity {
                    // No clock here: "now" = the oldest entry's time, so only eviction frees room.
                    let oldest = self.by_age.first().map_or(0, |&(seen, _)| seen);
                    if !self.make_room(oldest) {
                        return Err(VBridgeError::TableFull {
                            capacity: self.capacity,
                        });
                    }
                }
            }
        }
        self.entries.insert(
            mac,
            Entry {
                port,
                last_seen: None,
            },
        );
        self.publish_sizes();
        Ok(())
    }

    /// Removes every dynamic entry that expired at `now`; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let now = stamp(now);
        let mut removed = 0;
        while let Some(&(seen, mac)) = self.by_age.first() {
            if !self.expired(seen, now) {
                break;
            }
            self.by_age.pop_first();
            self.entries.remove(&mac);
            self.counters.aged_out.add();
            removed += 1;
        }
        if removed > 0 {
            self.publish_sizes();
        }
        removed
    }

    /// Removes every entry, static or dynamic, that points to `port` (a port that went away);
    /// returns how many. O(entries).
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let before = self.entries.len();
        let by_age = &mut self.by_age;
        self.entries.retain(|mac, entry| {
            if entry.port != port {
                return true;
            }
            if let Some(seen) = entry.last_seen {
                by_age.remove(&(seen, *mac));
            }
            false
        });
        let removed = before - self.entries.len();
        if removed > 0 {
            self.publish_sizes();
        }
        removed
    }

    /// The table's counters, shared with whoever reads statistics from another thread.
    pub(super) fn counters(&self) -> &Arc<TableCounters> {
        &self.counters
    }

    fn expired(&self, seen: Stamp, now: Stamp) -> bool {
        // As the Linux bridge: an entry last seen `ageing` ago or earlier is gone.
        now.saturating_sub(seen) >= self.ageing
    }

    /// Frees one slot at least: expired entries first, else the least recently seen dynamic
    /// entry. False when only static entries are left.
    fn make_room(&mut self, now: Stamp) -> bool {
        if self.expire(Duration::from_nanos(now)) > 0 {
            return true;
        }
        match self.by_age.pop_first() {
            Some((_, mac)) => {
                self.entries.remove(&mac);
                self.counters.evicted.add();
                true
            }
            None => false,
        }
    }

    fn publish_sizes(&self) {
        let dynamic = self.by_age.len();
        set_single_writer(&self.counters.entries, self.entries.len() as u64);
        set_single_writer(
            &self.counters.static_entries,
            (self.entries.len() - dynamic) as u64,
        );
    }
}

impl fmt::Debug for MacTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacTable")
            .field("entries", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("ageing", &self.ageing())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGEING: Duration = Duration::from_secs(10);

    fn mac(n: u8) -> MacAddr {
        [0x02, 0, 0, 0, 0, n]
    }

    fn port(n: u16) -> PortId {
        PortId::from_index(n)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rejects_bad_configurations() {
        assert_eq!(
            MacTable::new(0, AGEING).unwrap_err(),
            VBridgeError::TableCapacity { capacity: 0 }
        );
        assert_eq!(
            MacTable::new(MAX_TABLE_CAPACITY + 1, AGEING).unwrap_err(),
            VBridgeError::TableCapacity {
                capacity: MAX_TABLE_CAPACITY + 1
            }
        );
        assert_eq!(
            MacTable::new(4, Duration::ZERO).unwrap_err(),
            VBridgeError::ZeroAgeing
        );
    }

    #[test]
    fn learns_refreshes_and_moves() {
        let mut table = MacTable::new(8, AGEING).unwrap();
        assert_eq!(table.lookup(&mac(1), secs(0)), None);
        assert_eq!(table.learn(mac(1), port(0), secs(0)), Learned::New);
        assert_eq!(table.lookup(&mac(1), secs(1)), Some(port(0)));
        assert_eq!(table.learn(mac(1), port(0), secs(2)), Learned::Refreshed);
        assert_eq!(
            table.learn(mac(1), port(3), secs(3)),
            Learned::Moved { from: port(0) }
        );
        assert_eq!(table.lookup(&mac(1), secs(3)), Some(port(3)));
        assert_eq!(table.len(), 1);
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!((stats.learned, stats.moved, stats.entries), (1, 1, 1));
    }

    #[test]
    fn entries_age_out_unless_refreshed() {
        let mut table = MacTable::new(8, AGEING).unwrap();
        table.learn(mac(1), port(0), secs(0));
        table.learn(mac(2), port(1), secs(0));
        // Refreshing restarts the clock of mac 2 only.
        table.learn(mac(2), port(1), secs(8));
        assert_eq!(table.lookup(&mac(1), secs(9)), Some(port(0)));
        assert_eq!(table.lookup(&mac(1), secs(10)), None, "lookup sweeps it");
        assert_eq!(table.lookup(&mac(2), secs(10)), Some(port(1)));
        assert_eq!(table.expire(secs(17)), 0);
        assert_eq!(table.expire(secs(18)), 1);
        assert!(table.is_empty());
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!((stats.aged_out, stats.evicted, stats.entries), (2, 0, 0));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen_entry() {
        let mut table = MacTable::new(3, AGEING).unwrap();
        for n in 1..=3 {
            table.learn(mac(n), port(0), secs(u64::from(n)));
        }
        // mac 1 is the oldest until it is seen again; then mac 2 is.
        table.learn(mac(1), port(0), secs(4));
        assert_eq!(table.learn(mac(4), port(1), secs(5)), Learned::New);
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup(&mac(2), secs(5)), None);
        for n in [1, 3, 4] {
            assert!(table.lookup(&mac(n), secs(5)).is_some(), "mac {n}");
        }
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!((stats.learned, stats.evicted, stats.aged_out), (4, 1, 0));
    }

    #[test]
    fn a_full_table_prefers_expired_entries_to_eviction() {
        let mut table = MacTable::new(3, AGEING).unwrap();
        table.learn(mac(1), port(0), secs(0));
        table.learn(mac(2), port(0), secs(0));
        table.learn(mac(3), port(0), secs(5));
        assert_eq!(table.learn(mac(4), port(0), secs(11)), Learned::New);
        assert_eq!(table.len(), 2, "both expired entries swept");
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!((stats.aged_out, stats.evicted), (2, 0));
    }

    #[test]
    fn static_entries_never_age_move_or_leave() {
        let mut table = MacTable::new(2, AGEING).unwrap();
        table.add_static(mac(1), port(0)).unwrap();
        table.add_static(mac(1), port(0)).unwrap();
        assert_eq!(
            table.add_static(mac(1), port(1)).unwrap_err(),
            VBridgeError::StaticConflict {
                mac: mac(1),
                port: port(0)
            }
        );
        assert_eq!(table.learn(mac(1), port(1), secs(1)), Learned::Static);
        assert_eq!(table.expire(secs(1_000)), 0);
        assert_eq!(table.lookup(&mac(1), secs(1_000)), Some(port(0)));
        // The one dynamic slot is evicted over and over; the static entry stays.
        assert_eq!(table.learn(mac(2), port(1), secs(1_000)), Learned::New);
        assert_eq!(table.learn(mac(3), port(1), secs(1_001)), Learned::New);
        assert_eq!(table.lookup(&mac(1), secs(1_001)), Some(port(0)));
        // A static entry replaces the oldest dynamic one; then nothing more fits.
        table.add_static(mac(9), port(1)).unwrap();
        assert_eq!(
            table.learn(mac(4), port(1), secs(1_002)),
            Learned::NotLearned
        );
        assert_eq!(
            table.add_static(mac(5), port(1)).unwrap_err(),
            VBridgeError::TableFull { capacity: 2 }
        );
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!(
            (stats.static_entries, stats.entries, stats.not_learned),
            (2, 2, 1)
        );
        assert_eq!(stats.evicted, 2);
    }

    #[test]
    fn static_entry_replaces_a_dynamic_one() {
        let mut table = MacTable::new(4, AGEING).unwrap();
        table.learn(mac(1), port(2), secs(0));
        table.add_static(mac(1), port(0)).unwrap();
        assert_eq!(table.expire(secs(100)), 0);
        assert_eq!(table.lookup(&mac(1), secs(100)), Some(port(0)));
    }

    #[test]
    fn flushing_a_port_removes_its_entries_only() {
        let mut table = MacTable::new(8, AGEING).unwrap();
        table.add_static(mac(1), port(0)).unwrap();
        table.learn(mac(2), port(1), secs(0));
        table.learn(mac(3), port(1), secs(0));
        table.learn(mac(4), port(2), secs(0));
        assert_eq!(table.flush_port(port(1)), 2);
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup(&mac(2), secs(1)), None);
        assert_eq!(table.lookup(&mac(4), secs(1)), Some(port(2)));
        // The age index lost the flushed entries too: expiry finds only mac 4.
        assert_eq!(table.expire(secs(60)), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn table_stays_bounded_under_a_flood_of_addresses() {
        let mut table = MacTable::new(64, AGEING).unwrap();
        for n in 0..10_000u32 {
            let b = n.to_be_bytes();
            let addr = [0x02, 0, b[0], b[1], b[2], b[3]];
            table.learn(
                addr,
                port((n % 4) as u16),
                Duration::from_millis(u64::from(n)),
            );
            assert!(table.len() <= 64);
        }
        assert_eq!(table.by_age.len(), table.len());
        let stats = table.counters().snapshot(table.capacity());
        assert_eq!(stats.learned, 10_000);
        assert_eq!(stats.evicted + stats.aged_out, 10_000 - 64);
    }
}
