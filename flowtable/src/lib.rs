//! Concurrent flow table of flowsteer: which stack thread owns a flow.
//!
//! Each stack thread, after its rx burst, parses the packets into [`FlowKey`]s and asks the table
//! for their owners with [`FlowTable::hash_lookup_bulk`], which hashes each key once with
//! [`FlowKey::hash`] as it starts loading the key's bucket ([`FlowTable::lookup_bulk`] takes
//! hashes the caller already has). Packets owned by another thread are handed to that thread's
//! software queue. Rules are added when a socket listens ([`FlowTable::listen_add`]) or a
//! connection is set up ([`FlowTable::insert`]), deleted on close, and all rules of a thread go
//! at once when it exits ([`FlowTable::remove_owner`]).
//!
//! Lookup order: exact 5-tuple → listen (local ip, port) → listen (any ip, port) → miss; a listen
//! rule with several owners spreads new flows over them by the flow hash ([`pick_owner`]).
//!
//! Files: `key` (keys and the hash), `crc32c` (the hash's CRC, by instruction or table),
//! `lookup` (results and the owner pick), `table` (the [`FlowTable`] trait and [`new_table`]),
//! `bucket_table` (the table, [`BucketTable`], whose lookups take no lock), `cuckoo` (its placement
//! and writers), `line_buckets` and `wide_buckets` (its IPv4 and IPv6 bucket layouts and their
//! bulk lookups), `bucket_array` (their arrays, on transparent huge pages when large),
//! `listen_table` (its listen rules and their port filter), `seqlock` (the version protocol the
//! buckets and the listen rules use, and its memory-ordering argument).
//!
//! The DashMap-backed baseline this table is measured against lives in `flowsteer-bench`
//! (`bench/src/competitors/dashmap.rs`), behind the same [`FlowTable`] trait.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod bucket_array;
mod bucket_table;
mod crc32c;
mod cuckoo;
mod key;
mod line_buckets;
mod listen_table;
mod lookup;
mod seqlock;
mod table;
#[cfg(all(test, not(loom)))]
mod test_keys;
mod wide_buckets;

pub use bucket_array::huge_page_fallbacks;
pub use bucket_table::BucketTable;
pub use key::{FlowKey, ListenKey, Proto, ThreadId};
pub use lookup::{pick_owner, Lookup, OwnerSet};
pub use table::{new_table, new_table_sized, FlowTable, TableFull, Withdrawn};
