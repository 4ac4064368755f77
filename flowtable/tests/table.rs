//! Single-threaded semantics of the flow table: lookup order, listen rules, owner removal,
//! capacity and bulk lookup edge cases.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtable::{
    new_table, new_table_sized, BucketTable, FlowKey, FlowTable, ListenKey, Lookup, Proto,
    TableFull, Withdrawn,
};

const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OTHER_LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn client(i: u32) -> FlowKey {
    FlowKey::v4(
        Proto::Tcp,
        LOCAL4,
        8000,
        Ipv4Addr::from(0x0a00_0000 | i),
        (1024 + i % 60_000) as u16,
    )
}

fn with_table(capacity: usize, check: impl Fn(&dyn FlowTable)) {
    let table = new_table(capacity);
    assert_eq!(table.name(), BucketTable::NAME);
    assert_eq!(table.capacity(), capacity);
    check(table.as_ref());
}

#[test]
fn lookup_order_exact_then_listen_ip_then_listen_any_then_miss() {
    with_table(64, |table| {
        let key = client(1);
        let on_ip = ListenKey::on_ip(Proto::Tcp, IpAddr::V4(LOCAL4), 8000);
        let any = ListenKey::any_ip(Proto::Tcp, 8000);
        table.listen_add(any, 3).unwrap();
        table.listen_add(on_ip, 2).unwrap();
        assert_eq!(table.insert(key, 1), Ok(None));

        assert_eq!(table.lookup(&key), Lookup::Exact(1));
        assert_eq!(table.remove(&key), Some(1));
        assert_eq!(table.lookup(&key), Lookup::Listen(2));
        assert!(table.listen_remove(&on_ip, 2));
        assert_eq!(table.lookup(&key), Lookup::ListenAny(3));
        assert!(table.listen_remove(&any, 3));
        assert_eq!(table.lookup(&key), Lookup::Miss);
        assert_eq!((table.exact_len(), table.listen_len()), (0, 0));
    });
}

#[test]
fn listen_rules_match_only_their_protocol_address_and_family() {
    with_table(64, |table| {
        table
            .listen_add(
                ListenKey::on_ip(Proto::Tcp, IpAddr::V4(OTHER_LOCAL4), 8000),
                1,
            )
            .unwrap();
        table
            .listen_add(
                ListenKey::on_ip(Proto::Tcp, IpAddr::V6(LOCAL4.to_ipv6_mapped()), 8000),
                2,
            )
            .unwrap();
        table
            .listen_add(ListenKey::any_ip(Proto::Udp, 8000), 3)
            .unwrap();
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 8001), 4)
            .unwrap();
        // A TCP IPv4 flow to LOCAL4:8000 matches none of them.
        assert_eq!(table.lookup(&client(7)), Lookup::Miss);

        // The any-address rule serves both families.
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 8000), 5)
            .unwrap();
        let v6 = FlowKey::v6(
            Proto::Tcp,
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            8000,
            "2001:db8::99".parse::<Ipv6Addr>().unwrap(),
            5000,
        );
        assert_eq!(table.lookup(&client(7)), Lookup::ListenAny(5));
        assert_eq!(table.lookup(&v6), Lookup::ListenAny(5));
        let mapped = FlowKey::v6(
            Proto::Tcp,
            LOCAL4.to_ipv6_mapped(),
            8000,
            "::ffff:10.0.0.7".parse::<Ipv6Addr>().unwrap(),
            5000,
        );
        assert_eq!(table.lookup(&mapped), Lookup::Listen(2));
    });
}

#[test]
fn insert_replaces_and_reports_the_previous_owner() {
    with_table(64, |table| {
        let key = client(2);
        assert_eq!(table.insert(key, 4), Ok(None));
        assert_eq!(table.insert(key, 4), Ok(Some(4)));
        assert_eq!(table.insert(key, 9), Ok(Some(4)));
        assert_eq!(table.lookup(&key), Lookup::Exact(9));
        assert_eq!(table.exact_len(), 1);
        assert_eq!(table.remove(&key), Some(9));
        assert_eq!(table.remove(&key), None);
        assert_eq!(table.exact_len(), 0);
    });
}

#[test]
fn listen_add_is_idempotent_and_the_last_owner_removes_the_rule() {
    with_table(64, |table| {
        let rule = ListenKey::any_ip(Proto::Udp, 53);
        table.listen_add(rule, 1).unwrap();
        table.listen_add(rule, 1).unwrap();
        table.listen_add(rule, 2).unwrap();
        assert_eq!(table.listen_len(), 1);

        assert!(!table.listen_remove(&rule, 7), "7 never owned the rule");
        assert!(table.listen_remove(&rule, 1));
        assert!(!table.listen_remove(&rule, 1), "1 was already removed");
        assert_eq!(table.listen_len(), 1);
        let flow = FlowKey::v4(Proto::Udp, LOCAL4, 53, Ipv4Addr::new(10, 0, 0, 1), 3333);
        assert_eq!(table.lookup(&flow), Lookup::ListenAny(2));

        assert!(table.listen_remove(&rule, 2));
        assert_eq!(table.listen_len(), 0);
        assert_eq!(table.lookup(&flow), Lookup::Miss);
        assert!(!table.listen_remove(&rule, 2), "the rule is gone");
        // The rule can come back afterwards.
        table.listen_add(rule, 3).unwrap();
        assert_eq!(table.lookup(&flow), Lookup::ListenAny(3));
    });
}

#[test]
fn multi_owner_listen_rule_spreads_new_flows_and_keeps_each_flow_on_one_owner() {
    with_table(64, |table| {
        let rule = ListenKey::on_ip(Proto::Tcp, IpAddr::V4(LOCAL4), 8000);
        for owner in [3, 1, 0, 2] {
            table.listen_add(rule, owner).unwrap();
        }
        let keys: Vec<FlowKey> = (0..10_000).map(client).collect();
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let mut first = vec![Lookup::Miss; keys.len()];
        let mut second = vec![Lookup::Miss; keys.len()];
        table.lookup_bulk(&keys, &hashes, &mut first);
        table.lookup_bulk(&keys, &hashes, &mut second);
        assert_eq!(first, second);

        let mut counts = [0u32; 4];
        for result in &first {
            match result {
                Lookup::Listen(owner) => counts[usize::from(*owner)] += 1,
                other => panic!("expected a listen match, got {other:?}"),
            }
        }
        for (owner, count) in counts.iter().enumerate() {
            assert!(
                (2_000..=3_000).contains(count),
                "owner {owner}: {count} of 10000 ({counts:?})"
            );
        }
    });
}

/// Listen rules: TCP 8000 owned by 1 and 2 (returned first), TCP 9000 by 1 alone (returned
/// second), UDP 8000 by 2 alone.
fn listens_of_owners_1_and_2(table: &dyn FlowTable) -> (ListenKey, ListenKey) {
    let shared = ListenKey::any_ip(Proto::Tcp, 8000);
    let solo = ListenKey::any_ip(Proto::Tcp, 9000);
    table.listen_add(shared, 1).unwrap();
    table.listen_add(shared, 2).unwrap();
    table.listen_add(solo, 1).unwrap();
    table
        .listen_add(ListenKey::any_ip(Proto::Udp, 8000), 2)
        .unwrap();
    (shared, solo)
}

#[test]
fn remove_owner_counts_exact_rules_and_listen_memberships() {
    with_table(64, |table| {
        for i in 0..3 {
            table.insert(client(i), 1).unwrap();
        }
        for i in 3..5 {
            table.insert(client(i), 2).unwrap();
        }
        let (_, solo) = listens_of_owners_1_and_2(table);

        // 3 exact rules + memberships in `shared` and `solo`.
        assert_eq!(table.remove_owner(1), 5);
        assert_eq!(table.exact_len(), 2);
        assert_eq!(table.listen_len(), 2, "`solo` lost its only owner");
        for i in 0..3 {
            assert_eq!(table.lookup(&client(i)), Lookup::ListenAny(2));
        }
        for i in 3..5 {
            assert_eq!(table.lookup(&client(i)), Lookup::Exact(2));
        }
        assert!(!table.listen_remove(&solo, 1));
        assert_eq!(table.remove_owner(1), 0, "nothing of owner 1 is left");
        assert_eq!(table.remove_owner(2), 4);
        assert_eq!((table.exact_len(), table.listen_len()), (0, 0));
    });
}

#[test]
fn withdraw_owner_removes_exact_rules_and_shared_listens_but_keeps_sole_ones() {
    with_table(64, |table| {
        for i in 0..3 {
            table.insert(client(i), 1).unwrap();
        }
        table.insert(client(3), 2).unwrap();
        let (shared, solo) = listens_of_owners_1_and_2(table);

        let withdrawn = table.withdraw_owner(1);
        assert_eq!(
            withdrawn,
            Withdrawn {
                exact: 3,
                listen_withdrawn: 1,
                listen_kept: 1
            }
        );
        assert_eq!((table.exact_len(), table.listen_len()), (1, 3));
        // Owner 1's connections to the shared port now find owner 2 alone.
        for i in 0..3 {
            assert_eq!(table.lookup(&client(i)), Lookup::ListenAny(2));
        }
        assert_eq!(table.lookup(&client(3)), Lookup::Exact(2));
        let to_solo = FlowKey::v4(Proto::Tcp, LOCAL4, 9000, Ipv4Addr::new(10, 0, 0, 2), 40000);
        assert_eq!(table.lookup(&to_solo), Lookup::ListenAny(1), "kept");
        // Back: adding its rules again restores what it served; withdrawing again is a no-op
        // for what is already gone.
        table.listen_add(solo, 1).unwrap();
        table.listen_add(shared, 1).unwrap();
        assert_eq!(table.withdraw_owner(1).listen_withdrawn, 1);
        assert_eq!(table.remove_owner(1), 1, "only `solo` was left");
        assert_eq!(table.listen_len(), 2);
    });
}

#[test]
fn full_table_refuses_new_keys_but_replaces_existing_ones() {
    with_table(3, |table| {
        for i in 0..3 {
            assert_eq!(table.insert(client(i), 1), Ok(None));
        }
        let full = table.insert(client(3), 1).unwrap_err();
        assert_eq!(full, TableFull::rules(3));
        assert_eq!(
            full.to_string(),
            "flow table full: capacity of 3 rules reached"
        );
        assert_eq!(table.lookup(&client(3)), Lookup::Miss);
        assert_eq!(table.exact_len(), 3);

        assert_eq!(
            table.insert(client(0), 2),
            Ok(Some(1)),
            "replacing at capacity"
        );
        assert_eq!(table.lookup(&client(0)), Lookup::Exact(2));
        assert_eq!(table.exact_len(), 3);

        assert_eq!(table.remove(&client(1)), Some(1));
        assert_eq!(
            table.insert(client(3), 1),
            Ok(None),
            "room again after a removal"
        );
        assert_eq!(table.remove_owner(1), 2);
        assert_eq!(table.insert(client(4), 1), Ok(None));
        assert_eq!(table.insert(client(5), 1), Ok(None));
        assert!(table.insert(client(6), 1).is_err());
    });
}

#[test]
fn full_table_refuses_new_listen_rules_but_accepts_more_owners() {
    with_table(2, |table| {
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 1), 0)
            .unwrap();
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 2), 0)
            .unwrap();
        assert_eq!(
            table.listen_add(ListenKey::any_ip(Proto::Tcp, 3), 0),
            Err(TableFull::rules(2))
        );
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 1), 1)
            .unwrap();
        assert_eq!(table.listen_len(), 2);
        assert!(table.listen_remove(&ListenKey::any_ip(Proto::Tcp, 2), 0));
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 3), 0)
            .unwrap();
    });
}

#[test]
fn zero_capacity_table_refuses_every_rule() {
    with_table(0, |table| {
        assert_eq!(table.insert(client(0), 0), Err(TableFull::rules(0)));
        assert!(table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 1), 0)
            .is_err());
        assert_eq!(table.lookup(&client(0)), Lookup::Miss);
    });
}

#[test]
fn lookup_bulk_processes_the_shortest_slice_and_leaves_the_rest() {
    with_table(64, |table| {
        let keys: Vec<FlowKey> = (0..8).map(client).collect();
        for key in &keys {
            table.insert(*key, 6).unwrap();
        }
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();

        let mut out = vec![Lookup::Listen(99); 8];
        table.lookup_bulk(&keys[..5], &hashes, &mut out);
        assert_eq!(&out[..5], &[Lookup::Exact(6); 5]);
        assert_eq!(&out[5..], &[Lookup::Listen(99); 3]);

        let mut out = vec![Lookup::Listen(99); 8];
        table.lookup_bulk(&keys, &hashes[..2], &mut out);
        assert_eq!(&out[..2], &[Lookup::Exact(6); 2]);
        assert_eq!(&out[2..], &[Lookup::Listen(99); 6]);

        let mut out = vec![Lookup::Listen(99); 3];
        table.lookup_bulk(&keys, &hashes, &mut out);
        assert_eq!(out, vec![Lookup::Exact(6); 3]);

        table.lookup_bulk(&[], &hashes, &mut out);
        table.lookup_bulk(&keys, &hashes, &mut []);
        assert_eq!(out, vec![Lookup::Exact(6); 3]);
    });
}

#[test]
fn lookup_agrees_with_lookup_bulk() {
    with_table(64, |table| {
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 8000), 1)
            .unwrap();
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 8000), 2)
            .unwrap();
        table.insert(client(0), 3).unwrap();
        let keys: Vec<FlowKey> = (0..100).map(client).collect();
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let mut out = vec![Lookup::Miss; keys.len()];
        table.lookup_bulk(&keys, &hashes, &mut out);
        for (key, result) in keys.iter().zip(&out) {
            assert_eq!(table.lookup(key), *result);
        }
        assert_eq!(out[0], Lookup::Exact(3));
    });
}

fn client_v6(i: u32) -> FlowKey {
    FlowKey::v6(
        Proto::Tcp,
        "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        8000,
        Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i)),
        (1024 + i % 60_000) as u16,
    )
}

#[test]
fn hash_lookup_bulk_hashes_and_finds_what_lookup_bulk_finds() {
    with_table(1_000, |table| {
        table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 8000), 4)
            .unwrap();
        // Rules on every third client of each family; the others miss into the listen rule.
        for i in (0..200).step_by(3) {
            table.insert(client(i), (i % 5) as u16).unwrap();
            table.insert(client_v6(i), (i % 5) as u16).unwrap();
        }
        let v4: Vec<FlowKey> = (0..200).map(client).collect();
        let v6: Vec<FlowKey> = (0..200).map(client_v6).collect();
        let mixed: Vec<FlowKey> = (0..200)
            .map(|i| if i % 4 == 1 { client_v6(i) } else { client(i) })
            .collect();
        // Bursts longer than a chunk of 32, shorter, and empty.
        for keys in [
            &v4[..],
            &v4[..7],
            &v6[..],
            &mixed[..],
            &mixed[..33],
            &v4[..0],
        ] {
            let expected_hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
            let mut expected = vec![Lookup::Miss; keys.len()];
            table.lookup_bulk(keys, &expected_hashes, &mut expected);
            let mut hashes = vec![0; keys.len()];
            let mut out = vec![Lookup::Listen(99); keys.len()];
            table.hash_lookup_bulk(keys, &mut hashes, &mut out);
            assert_eq!(
                hashes,
                expected_hashes,
                "{}: {} keys",
                table.name(),
                keys.len()
            );
            assert_eq!(out, expected, "{}: {} keys", table.name(), keys.len());
            for (key, result) in keys.iter().zip(&out) {
                assert_eq!(table.lookup(key), *result, "{}: {key}", table.name());
            }
        }
        // And the answers are the rules' (the listen rule for the clients without one).
        let mut hashes = [0; 4];
        let mut out = [Lookup::Miss; 4];
        table.hash_lookup_bulk(&v4[..4], &mut hashes, &mut out);
        assert_eq!(
            out,
            [
                Lookup::Exact(0),
                Lookup::ListenAny(4),
                Lookup::ListenAny(4),
                Lookup::Exact(3)
            ]
        );
    });
}

#[test]
fn hash_lookup_bulk_processes_the_shortest_slice_and_leaves_the_rest() {
    with_table(64, |table| {
        let keys: Vec<FlowKey> = (0..8).map(client).collect();
        for key in &keys {
            table.insert(*key, 6).unwrap();
        }
        let mut hashes = vec![7u64; 8];
        let mut out = vec![Lookup::Listen(99); 8];
        table.hash_lookup_bulk(&keys[..5], &mut hashes, &mut out);
        assert_eq!(&out[..5], &[Lookup::Exact(6); 5]);
        assert_eq!(&out[5..], &[Lookup::Listen(99); 3]);
        assert_eq!(
            hashes[..5],
            keys[..5].iter().map(FlowKey::hash).collect::<Vec<_>>()[..]
        );
        assert_eq!(&hashes[5..], &[7; 3]);

        let mut hashes = vec![7u64; 2];
        let mut out = vec![Lookup::Listen(99); 8];
        table.hash_lookup_bulk(&keys, &mut hashes, &mut out);
        assert_eq!(&out[..2], &[Lookup::Exact(6); 2]);
        assert_eq!(&out[2..], &[Lookup::Listen(99); 6]);

        let mut hashes = vec![7u64; 8];
        let mut out = vec![Lookup::Listen(99); 3];
        table.hash_lookup_bulk(&keys, &mut hashes, &mut out);
        assert_eq!(out, vec![Lookup::Exact(6); 3]);
        assert_eq!(&hashes[3..], &[7; 5]);

        table.hash_lookup_bulk(&[], &mut hashes, &mut out);
        table.hash_lookup_bulk(&keys, &mut [], &mut out);
        table.hash_lookup_bulk(&keys, &mut hashes, &mut []);
        assert_eq!(out, vec![Lookup::Exact(6); 3]);
    });
}

#[test]
fn an_ipv6_capacity_bounds_the_ipv6_rules_inside_the_capacity() {
    let table = new_table_sized(10, 3);
    assert_eq!((table.capacity(), table.ipv6_capacity()), (10, 3));
    for i in 0..3 {
        assert_eq!(table.insert(client_v6(i), 1), Ok(None));
    }
    assert_eq!(table.insert(client_v6(3), 1), Err(TableFull::ipv6_rules(3)));
    assert_eq!(
        TableFull::ipv6_rules(3).to_string(),
        "flow table full: capacity of 3 IPv6 rules reached"
    );
    assert_eq!(table.insert(client_v6(0), 2), Ok(Some(1)), "a replacement");
    for i in 0..7 {
        assert_eq!(table.insert(client(i), 1), Ok(None));
    }
    assert_eq!(table.insert(client(7), 1), Err(TableFull::rules(10)));
    // A removed IPv6 rule frees an IPv6 slot and one of all.
    assert_eq!(table.remove(&client_v6(1)), Some(1));
    assert_eq!(table.exact_len(), 9);
    assert_eq!(table.insert(client(7), 1), Ok(None));
    // All ten taken, two of them IPv6: an IPv6 rule is refused by the capacity of all.
    assert_eq!(table.insert(client_v6(1), 1), Err(TableFull::rules(10)));
    assert_eq!(table.remove(&client(7)), Some(1));
    assert_eq!(table.insert(client_v6(1), 1), Ok(None));
    // Nine taken, three of them IPv6: the IPv6 capacity refuses, and the slot of all the
    // insert took first is given back.
    assert_eq!(table.remove(&client(6)), Some(1));
    assert_eq!(table.insert(client_v6(4), 1), Err(TableFull::ipv6_rules(3)));
    assert_eq!(table.insert(client(6), 1), Ok(None));
    // The exit of an owner frees its IPv6 slots too.
    assert_eq!(table.remove_owner(2), 1);
    assert_eq!(table.insert(client_v6(4), 1), Ok(None));
    assert_eq!(table.lookup(&client_v6(4)), Lookup::Exact(1));
    assert_eq!(table.remove_owner(1), 10);
    assert_eq!(table.exact_len(), 0);

    // No IPv6 rule at all; IPv4 ones up to the capacity.
    let table = new_table_sized(4, 0);
    assert_eq!(table.insert(client_v6(0), 1), Err(TableFull::ipv6_rules(0)));
    for i in 0..4 {
        assert_eq!(table.insert(client(i), 1), Ok(None));
    }
    assert_eq!(table.lookup(&client_v6(0)), Lookup::Miss);
    // Beyond the capacity, the capacity bounds the IPv6 rules.
    assert_eq!(new_table_sized(4, 100).ipv6_capacity(), 4);
    assert_eq!(new_table(4).ipv6_capacity(), 4);
}

#[test]
fn an_ipv4_only_bucket_table_has_one_ipv6_bucket() {
    let table = BucketTable::with_capacities(1 << 16, 0);
    assert_eq!(table.buckets().1, 1);
    assert_eq!(BucketTable::with_capacity(1 << 16).buckets().1, 16_384);
}

#[test]
fn bucket_table_is_shareable_and_named() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BucketTable>();
    let table = BucketTable::with_capacity(100);
    assert_eq!(table.name(), "bucketized");
    table.insert(client(0), 1).unwrap();
    assert_eq!(
        format!("{table:?}"),
        "BucketTable { exact_len: 1, listen_len: 0, capacity: 100, ipv4_buckets: 128, ipv6_buckets: 16 }"
    );
    let shared: std::sync::Arc<dyn FlowTable> = std::sync::Arc::from(new_table(4));
    assert_eq!(shared.capacity(), 4);
}

#[test]
fn ipv6_and_ipv4_keys_share_the_table() {
    with_table(1_000, |table| {
        let keys: Vec<FlowKey> = (0..400u32)
            .map(|i| {
                if i % 2 == 0 {
                    client(i)
                } else {
                    FlowKey::v6(
                        Proto::Udp,
                        "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
                        443,
                        Ipv6Addr::from(
                            0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i),
                        ),
                        (i % 60_000) as u16,
                    )
                }
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.insert(*key, (i % 7) as u16), Ok(None));
        }
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let mut out = vec![Lookup::Miss; keys.len()];
        table.lookup_bulk(&keys, &hashes, &mut out);
        for (i, result) in out.iter().enumerate() {
            assert_eq!(*result, Lookup::Exact((i % 7) as u16), "key {i}");
        }
        for key in keys.iter().step_by(2) {
            assert!(table.remove(key).is_some());
        }
        table.lookup_bulk(&keys, &hashes, &mut out);
        for (i, result) in out.iter().enumerate() {
            let expected = if i % 2 == 0 {
                Lookup::Miss
            } else {
                Lookup::Exact((i % 7) as u16)
            };
            assert_eq!(*result, expected, "key {i}");
        }
        assert_eq!(table.exact_len(), 200);
    });
}
