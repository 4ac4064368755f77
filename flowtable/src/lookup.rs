//! Lookup results and the owner pick of multi-owner listen rules.
//!
//! A listen rule may be served by several stack threads. A new flow that matches it goes to one of
//! them, chosen from the flow hash by a multiply-shift (`(hash * n) >> 64`): one multiplication, no
//! division, and it uses the high bits of the hash, which its final multiply mixes best. The pick depends only on
//! the hash and the owner *set* (owners are kept sorted), so every thread that looks up the same
//! key while the set is unchanged picks the same owner. Adding or removing an owner re-spreads
//! flows that have no exact rule yet; established flows are pinned by their exact rule.
//!
//! Cost: [`pick_owner`] is O(1); [`OwnerSet`] insert/remove are O(n) in the number of owners of one
//! rule (a handful of threads), lookups never allocate.

use crate::key::ThreadId;

/// Result of one lookup, in this order: exact 5-tuple → listen (ip, port) → listen (any, port) → miss.
///
/// A listen rule with several owners picks one by the flow hash (stable for a given key and owner set).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Lookup {
    /// An exact 5-tuple rule owns the flow.
    Exact(ThreadId),
    /// A listen rule on the flow's local (ip, port) owns it.
    Listen(ThreadId),
    /// A listen rule on (any ip, the flow's local port) owns it.
    ListenAny(ThreadId),
    /// No rule matches; the caller applies its miss policy.
    #[default]
    Miss,
}

impl Lookup {
    /// The owning thread, `None` on a miss.
    #[inline]
    pub fn owner(self) -> Option<ThreadId> {
        match self {
            Lookup::Exact(owner) | Lookup::Listen(owner) | Lookup::ListenAny(owner) => Some(owner),
            Lookup::Miss => None,
        }
    }

    /// The lookup as one non-zero word, for a packet to carry to its processor (the packet
    /// buffer's lookup note): the kind in bits 16..19, the owner in bits 0..16. 0 is no lookup.
    #[inline]
    pub fn note(self) -> u32 {
        match self {
            Lookup::Exact(owner) => NOTE_EXACT | u32::from(owner),
            Lookup::Listen(owner) => NOTE_LISTEN | u32::from(owner),
            Lookup::ListenAny(owner) => NOTE_LISTEN_ANY | u32::from(owner),
            Lookup::Miss => NOTE_MISS,
        }
    }

    /// The lookup [`Lookup::note`] made `note` from; `None` for 0 (no lookup) and for words it
    /// never makes.
    #[inline]
    pub fn from_note(note: u32) -> Option<Lookup> {
        let owner = note as ThreadId;
        match note & !0xffff {
            NOTE_EXACT => Some(Lookup::Exact(owner)),
            NOTE_LISTEN => Some(Lookup::Listen(owner)),
            NOTE_LISTEN_ANY => Some(Lookup::ListenAny(owner)),
            NOTE_MISS if owner == 0 => Some(Lookup::Miss),
            _ => None,
        }
    }
}

const NOTE_MISS: u32 = 1 << 16;
const NOTE_EXACT: u32 = 2 << 16;
const NOTE_LISTEN: u32 = 3 << 16;
const NOTE_LISTEN_ANY: u32 = 4 << 16;

/// The owner a flow with hash `hash` gets among `owners`; `None` when `owners` is empty.
///
/// Multiply-shift maps the 64-bit hash uniformly onto `0..owners.len()`. Callers must pass the
/// owners in a canonical order (sorted, as [`OwnerSet`] keeps them) for the pick to be a function of
/// the set rather than of insertion history.
#[inline]
pub fn pick_owner(hash: u64, owners: &[ThreadId]) -> Option<ThreadId> {
    let index = ((u128::from(hash) * owners.len() as u128) >> 64) as usize;
    owners.get(index).copied()
}

/// The owners of one listen rule: sorted, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerSet {
    sorted: Vec<ThreadId>,
}

impl OwnerSet {
    /// An empty set.
    pub fn new() -> Self {
        OwnerSet::default()
    }

    /// Adds `owner`; false if it was already present.
    pub fn insert(&mut self, owner: ThreadId) -> bool {
        match self.sorted.binary_search(&owner) {
            Ok(_) => false,
            Err(position) => {
                self.sorted.insert(position, owner);
                true
            }
        }
    }

    /// Removes `owner`; false if it was absent.
    pub fn remove(&mut self, owner: ThreadId) -> bool {
        match self.sorted.binary_search(&owner) {
            Ok(position) => {
                self.sorted.remove(position);
                true
            }
            Err(_) => false,
        }
    }

    /// True if `owner` is in the set.
    pub fn contains(&self, owner: ThreadId) -> bool {
        self.sorted.binary_search(&owner).is_ok()
    }

    /// The owner of a flow with hash `hash` (see [`pick_owner`]); `None` when empty.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<ThreadId> {
        pick_owner(hash, &self.sorted)
    }

    /// The owners in ascending order.
    pub fn as_slice(&self) -> &[ThreadId] {
        &self.sorted
    }

    /// Number of owners.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when no owner is left.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{FlowKey, Proto};

    #[test]
    fn every_lookup_survives_its_note_and_no_lookup_is_zero() {
        for owner in [0, 1, 63, ThreadId::MAX] {
            for lookup in [
                Lookup::Exact(owner),
                Lookup::Listen(owner),
                Lookup::ListenAny(owner),
                Lookup::Miss,
            ] {
                assert_ne!(lookup.note(), 0);
                assert_eq!(Lookup::from_note(lookup.note()), Some(lookup));
            }
        }
        assert_eq!(Lookup::from_note(0), None);
        assert_eq!(Lookup::from_note(NOTE_MISS | 5), None);
        assert_eq!(Lookup::from_note(9 << 16), None);
    }

    fn client_keys(count: u32) -> impl Iterator<Item = FlowKey> {
        (0..count).map(|i| {
            let remote = (0x0a00_0000 | i).to_be_bytes();
            FlowKey::from_v4_bytes(
                Proto::Tcp,
                [198, 18, 0, 1],
                8000,
                remote,
                1024 + (i % 50_000) as u16,
            )
        })
    }

    #[test]
    fn owner_of_each_variant() {
        assert_eq!(Lookup::Exact(3).owner(), Some(3));
        assert_eq!(Lookup::Listen(4).owner(), Some(4));
        assert_eq!(Lookup::ListenAny(5).owner(), Some(5));
        assert_eq!(Lookup::Miss.owner(), None);
        assert_eq!(Lookup::default(), Lookup::Miss);
    }

    #[test]
    fn pick_from_empty_is_none_and_single_owner_always_wins() {
        assert_eq!(pick_owner(u64::MAX, &[]), None);
        for hash in [0, 1, u64::MAX / 2, u64::MAX] {
            assert_eq!(pick_owner(hash, &[9]), Some(9));
        }
        assert_eq!(pick_owner(0, &[1, 2, 3]), Some(1));
        assert_eq!(pick_owner(u64::MAX, &[1, 2, 3]), Some(3));
    }

    #[test]
    fn four_owners_share_ten_thousand_flows_evenly() {
        let mut owners = OwnerSet::new();
        for owner in [0, 1, 2, 3] {
            owners.insert(owner);
        }
        let mut counts = [0u32; 4];
        for key in client_keys(10_000) {
            let owner = owners.pick(key.hash()).unwrap();
            counts[usize::from(owner)] += 1;
        }
        for (owner, count) in counts.iter().enumerate() {
            assert!(
                (2_000..=3_000).contains(count),
                "owner {owner} got {count} of 10000 flows: {counts:?}"
            );
        }
    }

    #[test]
    fn pick_is_stable_for_a_key_and_owner_set() {
        let mut forward = OwnerSet::new();
        let mut backward = OwnerSet::new();
        for owner in [2, 7, 11, 30] {
            forward.insert(owner);
        }
        for owner in [30, 11, 7, 2, 7] {
            backward.insert(owner);
        }
        assert_eq!(forward, backward);
        for key in client_keys(1_000) {
            let first = forward.pick(key.hash());
            assert_eq!(first, forward.pick(key.hash()));
            assert_eq!(first, backward.pick(key.hash()));
        }
    }

    #[test]
    fn owner_set_insert_remove() {
        let mut set = OwnerSet::new();
        assert!(set.is_empty());
        assert!(set.insert(5));
        assert!(!set.insert(5));
        assert!(set.insert(1));
        assert_eq!(set.as_slice(), &[1, 5]);
        assert!(set.contains(5));
        assert!(set.remove(5));
        assert!(!set.remove(5));
        assert!(!set.contains(5));
        assert_eq!(set.len(), 1);
        assert!(set.remove(1));
        assert!(set.is_empty());
        assert_eq!(set.pick(42), None);
    }
}
