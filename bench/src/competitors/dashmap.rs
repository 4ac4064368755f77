//! The baseline flow table: two sharded DashMaps, one for exact rules and one for listen rules,
//! behind flowsteer's [`FlowTable`] trait, so that the `flowtable` experiment runs it exactly as it
//! runs flowsteer's table. It was selectable in the engine until the product kept its one table.
//!
//! Concurrency: every operation takes a per-shard reader-writer lock (DashMap's own spin-then-park
//! lock). Lookups take shard read locks, so they run in parallel with each other, but a lookup waits
//! while a writer holds the same shard, and every read lock is an atomic read-modify-write on the
//! shard's lock word, which bounces that cache line between reading cores. Not lock-free; this is
//! the reference the lock-free tables are measured against.
//!
//! Cost per looked-up key: one probe of the exact map; on a miss, up to two probes of the listen
//! map. Each probe hashes its key again with the map's own hasher: DashMap's API cannot take the
//! caller's precomputed [`FlowKey::hash`], so this baseline rehashes (the precomputed hash is used
//! only for the multi-owner pick). The maps' hashers are ahash with per-table random seeds, so a
//! remote peer that chooses ports cannot aim at one shard or bucket.
//!
//! Capacity: an atomic counter per rule kind (exact, listen, and IPv6 exact against the IPv6
//! capacity, after the exact one) is reserved (compare-and-swap against the capacity)
//! while the shard write lock of the new key is held and released after a removal, so the number of
//! rules never exceeds the capacity even with concurrent inserts into different shards. The counter
//! may briefly read one higher than the map during a removal, never lower.
//!
//! `remove_owner` scans the whole table, write-locking one shard at a time: O(rules), meant for the
//! rare exit or death of a stack thread, not for the data path.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use flowtable::{FlowKey, FlowTable, ListenKey, Lookup, OwnerSet, TableFull, ThreadId, Withdrawn};

/// Up to this many exact rules are allocated up front; beyond it the maps grow on demand. Growing
/// rehashes a shard under its write lock (a reader stall), so the common sizes are preallocated,
/// while a capacity of tens of millions does not reserve gigabytes before the first flow.
const PREALLOCATED_RULES_LIMIT: usize = 1 << 20;

/// Concurrent flow table over two DashMaps. See the module documentation for its locking and costs.
pub struct DashMapTable {
    exact: DashMap<FlowKey, ThreadId, ahash::RandomState>,
    listen: DashMap<ListenKey, OwnerSet, ahash::RandomState>,
    capacity: usize,
    /// Of the exact rules, at most this many IPv6 ones (at most `capacity`).
    ipv6_capacity: usize,
    // Written by every rule change from any thread; padded away from the maps' headers, which
    // every lookup reads.
    exact_count: CachePadded<AtomicUsize>,
    ipv6_count: CachePadded<AtomicUsize>,
    listen_count: CachePadded<AtomicUsize>,
}

impl DashMapTable {
    /// The implementation's name in the experiments' tables.
    pub const NAME: &'static str = "dashmap";

    /// A table for at most `capacity` exact rules and at most `capacity` listen rules.
    /// A capacity of 0 yields a table that refuses every rule.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacities(capacity, capacity)
    }

    /// As [`DashMapTable::with_capacity`], with at most `ipv6_capacity` of the exact rules IPv6
    /// ones.
    pub fn with_capacities(capacity: usize, ipv6_capacity: usize) -> Self {
        DashMapTable {
            exact: DashMap::with_capacity_and_hasher(
                capacity.min(PREALLOCATED_RULES_LIMIT),
                ahash::RandomState::new(),
            ),
            listen: DashMap::with_hasher(ahash::RandomState::new()),
            capacity,
            ipv6_capacity: ipv6_capacity.min(capacity),
            exact_count: CachePadded::new(AtomicUsize::new(0)),
            ipv6_count: CachePadded::new(AtomicUsize::new(0)),
            listen_count: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    #[inline]
    fn lookup_one(&self, key: &FlowKey, hash: u64) -> Lookup {
        if let Some(owner) = self.exact.get(key).map(|entry| *entry.value()) {
            return Lookup::Exact(owner);
        }
        if let Some(owner) = self.pick_listener(&ListenKey::for_flow_ip(key), hash) {
            return Lookup::Listen(owner);
        }
        if let Some(owner) = self.pick_listener(&ListenKey::for_flow_any(key), hash) {
            return Lookup::ListenAny(owner);
        }
        Lookup::Miss
    }

    #[inline]
    fn pick_listener(&self, rule: &ListenKey, hash: u64) -> Option<ThreadId> {
        self.listen.get(rule).and_then(|owners| owners.pick(hash))
    }

    /// Takes one of `capacity` slots of `count`. Called with the shard write lock of the new
    /// rule held; the counter only needs to be a correct count, not to order memory, hence
    /// `Relaxed`.
    fn reserve_slot(count: &AtomicUsize, capacity: usize) -> bool {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < capacity).then_some(used + 1)
            })
            .is_ok()
    }

    /// Takes a slot for a new exact rule: one of all, then an IPv6 one for an IPv6 key (so a
    /// table full of rules says so, whatever the family).
    fn reserve_exact(&self, ipv6: bool) -> Result<(), TableFull> {
        if !Self::reserve_slot(&self.exact_count, self.capacity) {
            return Err(TableFull::rules(self.capacity));
        }
        if ipv6 && !Self::reserve_slot(&self.ipv6_count, self.ipv6_capacity) {
            self.exact_count.fetch_sub(1, Ordering::Relaxed);
            return Err(TableFull::ipv6_rules(self.ipv6_capacity));
        }
        Ok(())
    }

    /// Gives back the slots of `removed` exact rules, `ipv6` of them IPv6 ones.
    /// Removes every exact rule of `owner`; how many went.
    fn remove_exact_of(&self, owner: ThreadId) -> usize {
        let (mut removed, mut ipv6) = (0, 0);
        self.exact.retain(|key, rule_owner| {
            let keep = *rule_owner != owner;
            removed += usize::from(!keep);
            ipv6 += usize::from(!keep && key.is_ipv6());
            keep
        });
        self.release_exact(removed, ipv6);
        removed
    }

    fn release_exact(&self, removed: usize, ipv6: usize) {
        self.exact_count.fetch_sub(removed, Ordering::Relaxed);
        self.ipv6_count.fetch_sub(ipv6, Ordering::Relaxed);
    }
}

impl FlowTable for DashMapTable {
    fn insert(&self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull> {
        match self.exact.entry(key) {
            Entry::Occupied(mut existing) => Ok(Some(existing.insert(owner))),
            Entry::Vacant(vacant) => {
                self.reserve_exact(key.is_ipv6())?;
                vacant.insert(owner);
                Ok(None)
            }
        }
    }

    fn remove(&self, key: &FlowKey) -> Option<ThreadId> {
        let (_, owner) = self.exact.remove(key)?;
        self.release_exact(1, usize::from(key.is_ipv6()));
        Some(owner)
    }

    fn remove_owned(&self, key: &FlowKey, owner: ThreadId) -> bool {
        let removed = self
            .exact
            .remove_if(key, |_, rule_owner| *rule_owner == owner)
            .is_some();
        if removed {
            self.release_exact(1, usize::from(key.is_ipv6()));
        }
        removed
    }

    fn listen_add(&self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull> {
        match self.listen.entry(rule) {
            Entry::Occupied(mut existing) => {
                existing.get_mut().insert(owner);
            }
            Entry::Vacant(vacant) => {
                if !Self::reserve_slot(&self.listen_count, self.capacity) {
                    return Err(TableFull::rules(self.capacity));
                }
                let mut owners = OwnerSet::new();
                owners.insert(owner);
                vacant.insert(owners);
            }
        }
        Ok(())
    }

    fn listen_remove(&self, rule: &ListenKey, owner: ThreadId) -> bool {
        let Entry::Occupied(mut existing) = self.listen.entry(*rule) else {
            return false;
        };
        let was_owner = existing.get_mut().remove(owner);
        // Removing under the same entry lock keeps the invariant that no rule has an empty set.
        if existing.get().is_empty() {
            existing.remove();
            self.listen_count.fetch_sub(1, Ordering::Relaxed);
        }
        was_owner
    }

    fn remove_owner(&self, owner: ThreadId) -> usize {
        let exact_removed = self.remove_exact_of(owner);
        let mut memberships_removed = 0;
        let mut rules_emptied = 0;
        self.listen.retain(|_, owners| {
            memberships_removed += usize::from(owners.remove(owner));
            let keep = !owners.is_empty();
            rules_emptied += usize::from(!keep);
            keep
        });
        self.listen_count
            .fetch_sub(rules_emptied, Ordering::Relaxed);

        exact_removed + memberships_removed
    }

    fn withdraw_owner(&self, owner: ThreadId) -> Withdrawn {
        Withdrawn {
            exact: self.remove_exact_of(owner),
            ..self.withdraw_listens(owner)
        }
    }

    fn withdraw_listens(&self, owner: ThreadId) -> Withdrawn {
        let (mut listen_withdrawn, mut listen_kept) = (0, 0);
        for mut owners in self.listen.iter_mut() {
            if !owners.contains(owner) {
                continue;
            }
            if owners.len() == 1 {
                listen_kept += 1;
            } else {
                owners.remove(owner);
                listen_withdrawn += 1;
            }
        }
        Withdrawn {
            exact: 0,
            listen_withdrawn,
            listen_kept,
        }
    }

    fn lookup_bulk(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
        // zip stops at the shortest slice: mismatched lengths process the common prefix.
        for ((key, &hash), slot) in keys.iter().zip(hashes).zip(out.iter_mut()) {
            *slot = self.lookup_one(key, hash);
        }
    }

    fn lookup(&self, key: &FlowKey) -> Lookup {
        self.lookup_one(key, key.hash())
    }

    fn exact_len(&self) -> usize {
        self.exact_count.load(Ordering::Relaxed)
    }

    fn listen_len(&self) -> usize {
        self.listen_count.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn ipv6_capacity(&self) -> usize {
        self.ipv6_capacity
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }
}

impl fmt::Debug for DashMapTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashMapTable")
            .field("exact_len", &self.exact_len())
            .field("listen_len", &self.listen_len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use flowtable::{new_table_sized, Proto};

    use super::*;
    use crate::measure::SplitMix64;

    const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    /// Key `i` of a pool of 16: both families, two local ports.
    fn key(i: usize) -> FlowKey {
        let port = 8000 + (i % 2) as u16;
        let remote = 1024 + i as u16;
        if i % 4 == 3 {
            FlowKey::v6(Proto::Tcp, LOCAL6, port, LOCAL6, remote)
        } else {
            FlowKey::v4(Proto::Tcp, LOCAL4, port, Ipv4Addr::new(10, 0, 0, 1), remote)
        }
    }

    /// Listen rule `i` of a pool of 6: on the local address or any, per port and family.
    fn rule(i: usize) -> ListenKey {
        let port = 8000 + (i % 2) as u16;
        match i / 2 {
            0 => ListenKey::on_ip(Proto::Tcp, IpAddr::V4(LOCAL4), port),
            1 => ListenKey::on_ip(Proto::Tcp, IpAddr::V6(LOCAL6), port),
            _ => ListenKey::any_ip(Proto::Tcp, port),
        }
    }

    #[test]
    fn is_shareable_and_named() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DashMapTable>();
        let table = DashMapTable::with_capacity(10);
        assert_eq!(table.name(), "dashmap");
        table.insert(key(0), 1).unwrap();
        assert_eq!(
            format!("{table:?}"),
            "DashMapTable { exact_len: 1, listen_len: 0, capacity: 10 }"
        );
    }

    /// The baseline answers every call as flowsteer's table does, over random rule changes that
    /// fill both tables and reach the listen rules (flowsteer's table is checked against a
    /// reference model in the flowtable crate's tests): a measured baseline that misbehaved
    /// would make its figures meaningless.
    #[test]
    fn answers_as_the_flow_table_does() {
        let mut rng = SplitMix64::new(17);
        for round in 0..20 {
            let ours = new_table_sized(6, 3);
            let baseline = DashMapTable::with_capacities(6, 3);
            for step in 0..400 {
                let (k, r) = (key(rng.below(16)), rule(rng.below(6)));
                let owner = rng.below(4) as ThreadId;
                let at = format!("round {round} step {step}");
                match rng.below(7) {
                    0 | 1 => assert_eq!(ours.insert(k, owner), baseline.insert(k, owner), "{at}"),
                    2 => assert_eq!(ours.remove(&k), baseline.remove(&k), "{at}"),
                    3 => assert_eq!(
                        ours.remove_owned(&k, owner),
                        baseline.remove_owned(&k, owner),
                        "{at}"
                    ),
                    4 => assert_eq!(
                        ours.listen_add(r, owner),
                        baseline.listen_add(r, owner),
                        "{at}"
                    ),
                    5 => assert_eq!(
                        ours.listen_remove(&r, owner),
                        baseline.listen_remove(&r, owner),
                        "{at}"
                    ),
                    _ if step % 50 == 0 => assert_eq!(
                        ours.remove_owner(owner),
                        baseline.remove_owner(owner),
                        "{at}"
                    ),
                    _ => {}
                }
                assert_eq!(ours.exact_len(), baseline.exact_len(), "{at}");
                assert_eq!(ours.listen_len(), baseline.listen_len(), "{at}");
                let keys: Vec<FlowKey> = (0..16).map(key).collect();
                let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
                let (mut expected, mut found) = ([Lookup::Miss; 16], [Lookup::Miss; 16]);
                ours.lookup_bulk(&keys, &hashes, &mut expected);
                baseline.lookup_bulk(&keys, &hashes, &mut found);
                assert_eq!(expected, found, "{at}");
            }
        }
    }
}
