//! Model test: under random sequences of rule changes and lookups, the flow table behaves like a
//! plain `HashMap` reference model of the documented semantics.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtable::{
    new_table, pick_owner, FlowKey, FlowTable, ListenKey, Lookup, Proto, TableFull, ThreadId,
    Withdrawn,
};
use proptest::prelude::*;

/// Small enough that sequences hit full tables, large enough to leave room after removals.
const CAPACITY: usize = 6;
const OWNERS: ThreadId = 4;
const KEY_POOL: usize = 16;
const RULE_POOL: usize = 16;

const LOCAL4: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
const LOCAL6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
];
const PORTS: [u16; 2] = [80, 443];

fn proto(bit: usize) -> Proto {
    if bit == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    }
}

/// Keys whose local sides collide with the rule pool, so listen matches actually happen.
fn pool_key(i: usize) -> FlowKey {
    let local = (i >> 1) % 2;
    let port = PORTS[(i >> 2) % 2];
    let remote_port = 40_000 + i as u16;
    if i.is_multiple_of(2) {
        FlowKey::v4(
            proto(i >> 3 & 1),
            LOCAL4[local],
            port,
            Ipv4Addr::new(10, 0, 0, i as u8),
            remote_port,
        )
    } else {
        let remote = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, i as u16);
        FlowKey::v6(proto(i >> 3 & 1), LOCAL6[local], port, remote, remote_port)
    }
}

fn pool_rule(i: usize) -> ListenKey {
    let ip = match i % 4 {
        0 => None,
        1 => Some(IpAddr::V4(LOCAL4[0])),
        2 => Some(IpAddr::V6(LOCAL6[0])),
        _ => Some(IpAddr::V4(LOCAL4[1])),
    };
    ListenKey {
        proto: proto(i >> 3 & 1),
        ip,
        port: PORTS[(i >> 2) % 2],
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, ThreadId),
    Remove(usize),
    RemoveOwned(usize, ThreadId),
    Lookup(usize),
    LookupBulk(Vec<usize>),
    ListenAdd(usize, ThreadId),
    ListenRemove(usize, ThreadId),
    RemoveOwner(ThreadId),
    WithdrawOwner(ThreadId),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEY_POOL;
    let rule = 0..RULE_POOL;
    let owner = 0..OWNERS;
    prop_oneof![
        4 => (key.clone(), owner.clone()).prop_map(|(k, o)| Op::Insert(k, o)),
        2 => key.clone().prop_map(Op::Remove),
        2 => (key.clone(), owner.clone()).prop_map(|(k, o)| Op::RemoveOwned(k, o)),
        3 => key.clone().prop_map(Op::Lookup),
        2 => prop::collection::vec(key, 0..8).prop_map(Op::LookupBulk),
        3 => (rule.clone(), owner.clone()).prop_map(|(r, o)| Op::ListenAdd(r, o)),
        2 => (rule, owner.clone()).prop_map(|(r, o)| Op::ListenRemove(r, o)),
        1 => owner.clone().prop_map(Op::RemoveOwner),
        1 => owner.prop_map(Op::WithdrawOwner),
    ]
}

#[derive(Default)]
struct Model {
    exact: HashMap<FlowKey, ThreadId>,
    listen: HashMap<ListenKey, BTreeSet<ThreadId>>,
}

impl Model {
    fn insert(&mut self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull> {
        if !self.exact.contains_key(&key) && self.exact.len() == CAPACITY {
            return Err(TableFull::rules(CAPACITY));
        }
        Ok(self.exact.insert(key, owner))
    }

    fn remove_owned(&mut self, key: &FlowKey, owner: ThreadId) -> bool {
        let owned = self.exact.get(key) == Some(&owner);
        if owned {
            self.exact.remove(key);
        }
        owned
    }

    fn listen_add(&mut self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull> {
        if !self.listen.contains_key(&rule) && self.listen.len() == CAPACITY {
            return Err(TableFull::rules(CAPACITY));
        }
        self.listen.entry(rule).or_default().insert(owner);
        Ok(())
    }

    fn listen_remove(&mut self, rule: &ListenKey, owner: ThreadId) -> bool {
        let Some(owners) = self.listen.get_mut(rule) else {
            return false;
        };
        let removed = owners.remove(&owner);
        if owners.is_empty() {
            self.listen.remove(rule);
        }
        removed
    }

    fn remove_owner(&mut self, owner: ThreadId) -> usize {
        let before = self.exact.len();
        self.exact.retain(|_, o| *o != owner);
        let mut removed = before - self.exact.len();
        for owners in self.listen.values_mut() {
            removed += usize::from(owners.remove(&owner));
        }
        self.listen.retain(|_, owners| !owners.is_empty());
        removed
    }

    fn withdraw_owner(&mut self, owner: ThreadId) -> Withdrawn {
        let before = self.exact.len();
        self.exact.retain(|_, o| *o != owner);
        let mut withdrawn = Withdrawn {
            exact: before - self.exact.len(),
            ..Withdrawn::default()
        };
        for owners in self.listen.values_mut() {
            if owners.contains(&owner) {
                if owners.len() == 1 {
                    withdrawn.listen_kept += 1;
                } else {
                    owners.remove(&owner);
                    withdrawn.listen_withdrawn += 1;
                }
            }
        }
        withdrawn
    }

    fn pick(&self, rule: &ListenKey, hash: u64) -> Option<ThreadId> {
        let owners: Vec<ThreadId> = self.listen.get(rule)?.iter().copied().collect();
        pick_owner(hash, &owners)
    }

    fn lookup(&self, key: &FlowKey) -> Lookup {
        if let Some(owner) = self.exact.get(key) {
            return Lookup::Exact(*owner);
        }
        let on_ip = ListenKey::on_ip(key.proto(), key.local_ip(), key.local_port());
        if let Some(owner) = self.pick(&on_ip, key.hash()) {
            return Lookup::Listen(owner);
        }
        let any = ListenKey::any_ip(key.proto(), key.local_port());
        if let Some(owner) = self.pick(&any, key.hash()) {
            return Lookup::ListenAny(owner);
        }
        Lookup::Miss
    }
}

fn run(table: &dyn FlowTable, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(k, owner) => {
                let key = pool_key(*k);
                prop_assert_eq!(
                    table.insert(key, *owner),
                    model.insert(key, *owner),
                    "step {}",
                    step
                );
            }
            Op::Remove(k) => {
                let key = pool_key(*k);
                prop_assert_eq!(
                    table.remove(&key),
                    model.exact.remove(&key),
                    "step {}",
                    step
                );
            }
            Op::RemoveOwned(k, owner) => {
                let key = pool_key(*k);
                prop_assert_eq!(
                    table.remove_owned(&key, *owner),
                    model.remove_owned(&key, *owner),
                    "step {}",
                    step
                );
            }
            Op::Lookup(k) => {
                let key = pool_key(*k);
                prop_assert_eq!(table.lookup(&key), model.lookup(&key), "step {}", step);
            }
            Op::LookupBulk(ks) => {
                let keys: Vec<FlowKey> = ks.iter().map(|k| pool_key(*k)).collect();
                let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
                let mut out = vec![Lookup::Miss; keys.len()];
                table.lookup_bulk(&keys, &hashes, &mut out);
                let expected: Vec<Lookup> = keys.iter().map(|k| model.lookup(k)).collect();
                prop_assert_eq!(out, expected, "step {}", step);
            }
            Op::ListenAdd(r, owner) => {
                let rule = pool_rule(*r);
                prop_assert_eq!(
                    table.listen_add(rule, *owner),
                    model.listen_add(rule, *owner),
                    "step {}",
                    step
                );
            }
            Op::ListenRemove(r, owner) => {
                let rule = pool_rule(*r);
                prop_assert_eq!(
                    table.listen_remove(&rule, *owner),
                    model.listen_remove(&rule, *owner),
                    "step {}",
                    step
                );
            }
            Op::RemoveOwner(owner) => {
                prop_assert_eq!(
                    table.remove_owner(*owner),
                    model.remove_owner(*owner),
                    "step {}",
                    step
                );
            }
            Op::WithdrawOwner(owner) => {
                prop_assert_eq!(
                    table.withdraw_owner(*owner),
                    model.withdraw_owner(*owner),
                    "step {}",
                    step
                );
            }
        }
        prop_assert_eq!(
            table.exact_len(),
            model.exact.len(),
            "exact_len after step {}",
            step
        );
        prop_assert_eq!(
            table.listen_len(),
            model.listen.len(),
            "listen_len after step {}",
            step
        );
    }
    // Every key of the pool ends where the model says.
    for k in 0..KEY_POOL {
        let key = pool_key(k);
        prop_assert_eq!(
            table.lookup(&key),
            model.lookup(&key),
            "final lookup of key {}",
            k
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn table_behaves_like_the_reference_model(ops in prop::collection::vec(op(), 1..80)) {
        let table = new_table(CAPACITY);
        run(table.as_ref(), &ops)?;
    }
}

#[test]
fn key_and_rule_pools_are_distinct_and_overlap() {
    let keys: BTreeSet<String> = (0..KEY_POOL)
        .map(|i| format!("{:?}", pool_key(i)))
        .collect();
    let rules: BTreeSet<String> = (0..RULE_POOL)
        .map(|i| format!("{:?}", pool_rule(i)))
        .collect();
    assert_eq!(keys.len(), KEY_POOL);
    assert_eq!(rules.len(), RULE_POOL);
    // Every key has at least one rule in the pool it could match: the model test reaches the
    // listen paths and not only exact hits and misses.
    for i in 0..KEY_POOL {
        let key = pool_key(i);
        let matchable = (0..RULE_POOL).map(pool_rule).any(|rule| {
            rule.proto == key.proto()
                && rule.port == key.local_port()
                && rule.ip.is_none_or(|ip| ip == key.local_ip())
        });
        assert!(matchable, "key {i} ({key}) matches no rule of the pool");
    }
}
