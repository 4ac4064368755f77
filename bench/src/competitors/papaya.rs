//! papaya's lock-free hash map as a flow-table contender: the concurrent map of the Rust
//! ecosystem whose reads take no lock and write no shared line (an epoch guard from `seize` per
//! burst, as flowsteer's readers pass a quiescent point per burst), with no bulk lookup: each key
//! is hashed (ahash, as the dashmap table) and probed on its own.

use ahash::RandomState;
use flowtable::{FlowKey, ThreadId};

use crate::flow_table::{owner_of, ChurnWriter, Contender, Keys, Scratch, BURST};

/// The rules of one table size in a papaya map.
pub struct PapayaContender<'k> {
    map: papaya::HashMap<FlowKey, ThreadId, RandomState>,
    keys: &'k Keys,
}

impl<'k> PapayaContender<'k> {
    /// A map sized for the rules and the writer's window, holding `keys.rules`.
    pub fn build(keys: &'k Keys) -> PapayaContender<'k> {
        let map = papaya::HashMap::with_capacity_and_hasher(
            keys.rules.len() + crate::flow_table::CHURN_WINDOW + BURST,
            RandomState::new(),
        );
        {
            let pinned = map.pin();
            for (i, key) in keys.rules.iter().enumerate() {
                pinned.insert(*key, owner_of(i));
            }
        }
        PapayaContender { map, keys }
    }
}

impl Contender for PapayaContender<'_> {
    fn name(&self) -> String {
        "papaya".to_string()
    }

    #[inline]
    fn lookup_burst(&self, hit: bool, start: usize, _scratch: &mut Scratch) -> usize {
        let pinned = self.map.pin();
        self.keys.sequence(hit)[start..start + BURST]
            .iter()
            .filter(|key| pinned.get(*key).is_some())
            .count()
    }

    fn verify(&self, keys: &Keys) -> Result<(), String> {
        let pinned = self.map.pin();
        for (i, key) in keys.rules.iter().enumerate() {
            if pinned.get(key) != Some(&owner_of(i)) {
                return Err(format!("papaya: rule {i} ({key}) not found with its owner"));
            }
        }
        match keys.misses.iter().find(|key| pinned.get(*key).is_some()) {
            Some(key) => Err(format!("papaya: miss key {key} found")),
            None => Ok(()),
        }
    }

    fn with_writer(&self, f: &mut dyn FnMut(&mut dyn ChurnWriter)) {
        f(&mut PapayaWriter {
            map: &self.map,
            keys: &self.keys.churn,
        });
    }
}

struct PapayaWriter<'a> {
    map: &'a papaya::HashMap<FlowKey, ThreadId, RandomState>,
    keys: &'a [FlowKey],
}

impl ChurnWriter for PapayaWriter<'_> {
    fn insert(&mut self, index: usize) -> bool {
        let key = self.keys[index % self.keys.len()];
        self.map.pin().insert(key, owner_of(index)).is_none()
    }

    fn remove(&mut self, index: usize) -> bool {
        self.map
            .pin()
            .remove(&self.keys[index % self.keys.len()])
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn papaya_verifies_and_finds_whole_bursts() {
        let keys = Keys::new(2048, 2048);
        let papaya = PapayaContender::build(&keys);
        papaya.verify(&keys).unwrap();
        assert_eq!(papaya.lookup_burst(true, 0, &mut Scratch::new()), BURST);
        assert_eq!(papaya.lookup_burst(false, 0, &mut Scratch::new()), 0);
        let mut failures = 0;
        papaya.with_writer(&mut |w| {
            failures += usize::from(!w.insert(7)) + usize::from(!w.remove(7));
            failures += usize::from(w.remove(7));
        });
        assert_eq!(failures, 0);
        papaya.verify(&keys).unwrap();
    }
}
