//! The concurrent flow table interface and the constructor of the table.
//!
//! Every stack thread looks up the table once per rx burst ([`FlowTable::lookup_bulk`]) while rules
//! are added and removed from any thread (connect, accept, listen, close, thread exit). All methods
//! take `&self`; readers and writers may run concurrently from any number of threads. What an
//! implementation guarantees about blocking and progress is stated on it ([`BucketTable`], the
//! one [`new_table`] builds; the benchmark's baselines implement the trait too).
//!
//! Capacity bounds the number of exact rules (and, separately, the number of distinct listen rules):
//! a full table refuses new rules with [`TableFull`] instead of growing without bound under a flood
//! of connections.

use std::fmt;

use crate::bucket_table::BucketTable;
use crate::key::{FlowKey, ListenKey, ThreadId};
use crate::lookup::Lookup;

/// A rule could not be added because the table already holds `capacity` rules of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFull {
    /// The configured capacity that was reached.
    pub capacity: usize,
    /// Whether it is the capacity for IPv6 exact rules ([`new_table_sized`]) rather than the
    /// one for all exact rules (or for listen rules).
    pub ipv6: bool,
}

impl TableFull {
    /// The table holds `capacity` rules of the kind being added.
    pub fn rules(capacity: usize) -> Self {
        TableFull {
            capacity,
            ipv6: false,
        }
    }

    /// The table holds `capacity` IPv6 exact rules.
    pub fn ipv6_rules(capacity: usize) -> Self {
        TableFull {
            capacity,
            ipv6: true,
        }
    }
}

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flow table full: capacity of {} {}rules reached",
            self.capacity,
            if self.ipv6 { "IPv6 " } else { "" }
        )
    }
}

impl std::error::Error for TableFull {}

/// What [`FlowTable::withdraw_owner`] removed and kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Exact rules removed.
    pub exact: usize,
    /// Listen rules the owner was removed from (each had another owner).
    pub listen_withdrawn: usize,
    /// Listen rules the owner alone owns, kept.
    pub listen_kept: usize,
}

/// Concurrent flow table. All methods take `&self`; readers and writers run from any thread at once.
///
/// A lookup returns, in this order: the owner of the exact 5-tuple rule, the owner of the listen
/// rule on (local ip, local port), the owner of the listen rule on (any, local port), or a miss.
pub trait FlowTable: Send + Sync {
    /// Adds or replaces an exact rule; `Ok(previous owner)`. Replacing an existing key always
    /// succeeds; adding a new key fails with [`TableFull`] when `capacity` exact rules exist.
    fn insert(&self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull>;

    /// Removes an exact rule; returns its owner, `None` if there was no such rule.
    fn remove(&self, key: &FlowKey) -> Option<ThreadId>;

    /// Removes an exact rule only if `owner` owns it; true when it went. A thread that ends a
    /// connection deletes its own rule and never one another thread has since installed for
    /// the same 5-tuple (the owner check and the removal are one step).
    fn remove_owned(&self, key: &FlowKey, owner: ThreadId) -> bool;

    /// Adds `owner` to the rule's owner set (idempotent). Fails with [`TableFull`] only when the rule
    /// is new and `capacity` listen rules exist.
    fn listen_add(&self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull>;

    /// Removes `owner` from the rule's owner set; the rule goes when its set is empty.
    /// Returns false if `owner` was not an owner of `rule`.
    fn listen_remove(&self, rule: &ListenKey, owner: ThreadId) -> bool;

    /// Removes every exact rule of `owner` and `owner` from every listen rule (listen rules left
    /// without owners go). Returns how many entries went: exact rules removed plus listen rules
    /// `owner` was removed from.
    fn remove_owner(&self, owner: ThreadId) -> usize;

    /// Withdraws an owner that failed: removes every exact rule of `owner`, and `owner` from
    /// every listen rule that has another owner, so that new flows to those ports go to the
    /// other owners at once. A listen rule `owner` alone owns stays: its packets still name
    /// `owner`, whose caller counts them as for a failed owner until it serves again (adding
    /// the rule again is a no-op) or the rule is removed. A rule of `owner` inserted
    /// concurrently may be missed, as with [`FlowTable::remove_owner`].
    fn withdraw_owner(&self, owner: ThreadId) -> Withdrawn;

    /// The listen part of [`FlowTable::withdraw_owner`] alone (its `exact` is 0), for a caller
    /// that deletes the owner's exact rules by key: O(listen rules) instead of a scan of every
    /// bucket.
    fn withdraw_listens(&self, owner: ThreadId) -> Withdrawn;

    /// Looks up `keys` into `out`. `hashes[i]` must be `keys[i].hash()`, computed once by the caller.
    /// The three slices should have the same length; if they do not, only the first
    /// `min(keys.len(), hashes.len(), out.len())` entries are processed (never a panic) and the rest of
    /// `out` is left untouched.
    fn lookup_bulk(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]);

    /// Hashes `keys` into `hashes` (`hashes[i] = keys[i].hash()`) and looks them up into `out`:
    /// what the caller gets from hashing the burst and calling [`FlowTable::lookup_bulk`], for
    /// a caller that has not hashed it yet. Lengths as in `lookup_bulk`: only the first
    /// `min(keys.len(), hashes.len(), out.len())` entries of `hashes` and `out` are written.
    ///
    /// Why it exists: a table may hash each key just before it starts loading that key's
    /// bucket, so that the loads overlap the hashing of the keys after it, instead of starting
    /// only when the whole burst is hashed. The bucketized table does, for bursts of IPv4 keys;
    /// this default hashes first.
    fn hash_lookup_bulk(&self, keys: &[FlowKey], hashes: &mut [u64], out: &mut [Lookup]) {
        let count = keys.len().min(hashes.len()).min(out.len());
        for (hash, key) in hashes[..count].iter_mut().zip(keys) {
            *hash = key.hash();
        }
        self.lookup_bulk(&keys[..count], &hashes[..count], &mut out[..count]);
    }

    /// Looks up one key; same semantics as [`FlowTable::lookup_bulk`].
    fn lookup(&self, key: &FlowKey) -> Lookup {
        let mut out = [Lookup::Miss];
        self.lookup_bulk(std::slice::from_ref(key), &[key.hash()], &mut out);
        out[0]
    }

    /// Number of exact rules.
    fn exact_len(&self) -> usize;

    /// Number of listen rules (each counted once, whatever its number of owners).
    fn listen_len(&self) -> usize;

    /// Maximum number of exact rules (and of listen rules).
    fn capacity(&self) -> usize;

    /// Maximum number of IPv6 exact rules, within [`FlowTable::capacity`]: at most the
    /// capacity.
    fn ipv6_capacity(&self) -> usize;

    /// Short name of the implementation, as reports and benchmark tables print it
    /// (`"bucketized"`).
    fn name(&self) -> &'static str;
}

/// Builds the flow table ([`BucketTable`]) holding at most `capacity` exact rules, of either
/// family. Callers that share it between threads turn it into an `Arc` with `Arc::from(box)`.
pub fn new_table(capacity: usize) -> Box<dyn FlowTable> {
    new_table_sized(capacity, capacity)
}

/// Builds the flow table holding at most `capacity` exact rules, of which at most
/// `ipv6_capacity` IPv6 ones (beyond `capacity`, `capacity` is the bound). The IPv6 buckets are
/// sized for the smaller of the two: an IPv4-only deployment sets 0 and commits no memory for
/// IPv6 rules beyond one bucket.
pub fn new_table_sized(capacity: usize, ipv6_capacity: usize) -> Box<dyn FlowTable> {
    Box::new(BucketTable::with_capacities(capacity, ipv6_capacity))
}
