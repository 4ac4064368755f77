//! DPDK's rte_hash, rte_ring and rte_softrss as contenders, through `dpdk-sys`.
//!
//! The EAL runs without PCI or shared configuration, with one lcore and 512 MiB: enough for a
//! 1 Mi-entry rte_hash. Its memory is on 2 MiB huge pages, as DPDK runs in production, when the
//! machine has [`EAL_HUGE_PAGES`] free ones (`--in-memory`: no hugetlbfs mount needed); else on
//! ordinary 4 KiB pages (`--no-huge`), and the flow table's output says so, since the flowsteer
//! table's bucket heads are on transparent huge pages and the comparison is then not like for
//! like. `rte_eal_init` pins the calling thread to the main lcore's CPU; the bench restores
//! the thread's previous CPU set right after, because every thread it spawns later inherits it.
//!
//! rte_hash runs with `RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF` (lock-free readers, one writer at
//! a time; `MULTI_WRITER_ADD` is only needed for several concurrent writers, which this
//! benchmark does not have) and DPDK's default hash function (CRC32 on x86). In LF mode a deleted
//! key's slot is not reusable until the application frees it with
//! `rte_hash_free_key_with_position` once no reader can still be looking at it. The writer here
//! frees positions [`FREE_DELAY`] after their delete, a time-based grace period: DPDK's own
//! alternative, RCU QSBR, would make every reader report a quiescent state per burst, a cost the
//! readers measured here do not pay. The key store itself is never freed while readers run (it
//! goes with `rte_hash_free` after every thread has joined), so a reader preempted for longer
//! than the grace period could at worst read a reused slot's key (and not match it, or match the
//! new key): a wrong lookup, never an invalid memory access.

use std::collections::VecDeque;
use std::ffi::{c_void, CString};
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dpdk_sys::{eal, ffi, Ring};

use super::TupleHasher;
use flowtable::FlowKey;

use crate::flow_table::{owner_of, ChurnWriter, Contender, Keys, Scratch, BURST, CHURN_WINDOW};
use crate::swq::{self, Dequeue, Enqueue, Shape};

/// Grace period between a delete and the reuse of the key's slot.
pub const FREE_DELAY: Duration = Duration::from_millis(10);

/// Slots beyond the rules and the writer's window: deleted keys wait [`FREE_DELAY`] before their
/// slot is free again, about 1000 of them at the writer's pace plus a catch-up batch after the
/// writer was descheduled; without this room inserts fail with `-ENOSPC`.
const GRACE_SLOTS: usize = 16 * 1024;

/// Free 2 MiB huge pages the EAL's 512 MiB need.
pub const EAL_HUGE_PAGES: u64 = 256;

/// The EAL arguments (after the program name) besides the memory choice. `--no-pci`: the
/// competitors need no device, and a PCI scan would probe (and could take) the machine's own NICs.
const EAL_ARGS: &[&str] = &[
    "--no-pci",
    "--no-shconf",
    "--no-telemetry",
    "-m",
    "512",
    "-l",
    "0",
    "--log-level",
    "lib.eal:error",
];

/// Makes object names unique in the process (DPDK keys rings and hashes by name).
static NAME_SEQ: AtomicU32 = AtomicU32::new(0);

pub(super) fn unique_name(prefix: &str) -> String {
    format!("{prefix}{}", NAME_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Free huge pages of the default size, from `/proc/meminfo`.
fn free_huge_pages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("HugePages_Free:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Where the EAL's memory is, once it started: for the tables' notes.
static EAL_MEMORY: OnceLock<String> = OnceLock::new();

/// How the EAL's memory (and so rte_hash's and rte_ring's) is backed, once it started.
pub fn eal_memory() -> Option<&'static str> {
    EAL_MEMORY.get().map(String::as_str)
}

/// Initializes the EAL once; later calls return the first outcome.
pub fn eal_init() -> Result<(), String> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    OUTCOME
        .get_or_init(|| {
            let saved = affinity::get();
            let free = free_huge_pages();
            let (memory, described) = if free >= EAL_HUGE_PAGES {
                ("--in-memory", "2 MiB huge pages".to_string())
            } else {
                (
                    "--no-huge",
                    format!(
                        "4 KiB pages (--no-huge: {free} free huge pages, {EAL_HUGE_PAGES} \
                         needed; echo {EAL_HUGE_PAGES} > /proc/sys/vm/nr_hugepages)"
                    ),
                )
            };
            let result = eal::init(std::iter::once(memory).chain(EAL_ARGS.iter().copied()));
            if result.is_ok() {
                let _ = EAL_MEMORY.set(described);
            }
            if let Ok(set) = &saved {
                if let Err(e) = affinity::set(set) {
                    return Err(format!(
                        "EAL started but the main thread's CPU set could not be restored: {e}"
                    ));
                }
            }
            result.map(|_| ()).map_err(|e| {
                format!("EAL init failed ({e}); run as root or with the rights DPDK needs")
            })
        })
        .clone()
}

/// The calling thread's CPU set, read and written with `sched_{get,set}affinity`.
mod affinity {
    pub fn get() -> Result<libc::cpu_set_t, String> {
        // SAFETY: cpu_set_t is plain data (all-zero is the empty set); sched_getaffinity writes
        // at most size_of::<cpu_set_t>() bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                Ok(set)
            } else {
                Err(std::io::Error::last_os_error().to_string())
            }
        }
    }

    pub fn set(set: &libc::cpu_set_t) -> Result<(), String> {
        // SAFETY: sched_setaffinity only reads the set, whose exact size is passed.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    }
}

/// A key form rte_hash is created for: its `key_len` is the form's size.
pub trait HashKey: Copy + Send + Sync + 'static {
    /// The contender's name in the tables.
    const NAME: &'static str;
    /// The form of `key`.
    fn of(key: &FlowKey) -> Self;
    /// The key's bytes, for rte_hash.
    fn bytes(&self) -> *const c_void;
}

/// The five packed words of [`FlowKey::words`] and 8 zero bytes: one table for IPv4 and IPv6
/// flows, as flowsteer's. 48 bytes, as DPDK's l3fwd pads its IPv6 key, because rte_hash has a
/// vector compare for 16, 32, 48, ... 128-byte keys and takes `memcmp` for other lengths: with
/// the 40 bytes alone its hits at 1 Mi rules took 1.6x as long.
impl HashKey for [u8; 48] {
    const NAME: &'static str = "rte_hash48";

    fn of(key: &FlowKey) -> Self {
        let mut bytes = [0u8; 48];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(key.words()) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        bytes
    }

    fn bytes(&self) -> *const c_void {
        self.as_ptr().cast()
    }
}

/// An IPv4 5-tuple in 16 bytes (addresses, ports, protocol), the form DPDK's l3fwd keys its
/// IPv4 exact-match table with: a table for IPv4 flows only.
impl HashKey for [u8; 16] {
    const NAME: &'static str = "rte_hash16";

    fn of(key: &FlowKey) -> Self {
        let address = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => v4.octets(),
            std::net::IpAddr::V6(_) => unreachable!("the flow-table experiment's keys are IPv4"),
        };
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&address(key.local_ip()));
        bytes[4..8].copy_from_slice(&address(key.remote_ip()));
        bytes[8..10].copy_from_slice(&key.local_port().to_be_bytes());
        bytes[10..12].copy_from_slice(&key.remote_port().to_be_bytes());
        bytes[12] = key.proto().number();
        bytes
    }

    fn bytes(&self) -> *const c_void {
        self.as_ptr().cast()
    }
}

/// An rte_hash created with `RW_CONCURRENCY_LF`; freed on drop.
struct RawHash(NonNull<ffi::rte_hash>);

// SAFETY: with RW_CONCURRENCY_LF, rte_hash lookups are safe from any number of threads
// concurrently with one writer; the writer operations are reachable only through the single
// `HashWriter` behind a Mutex (see `HashContender::with_writer`), so at most one thread writes.
unsafe impl Send for RawHash {}
// SAFETY: as for Send.
unsafe impl Sync for RawHash {}

impl Drop for RawHash {
    fn drop(&mut self) {
        // SAFETY: created by rte_hash_create and freed once, after every reader and the writer
        // (scoped threads that borrow the contender) have finished.
        unsafe { ffi::rte_hash_free(self.0.as_ptr()) }
    }
}

/// rte_hash holding the experiment's rules in the key form `K`, as a flow-table contender.
pub struct HashContender<K: HashKey> {
    hash: RawHash,
    hits: Vec<K>,
    misses: Vec<K>,
    writer: Mutex<HashWriter<K>>,
}

struct HashWriter<K: HashKey> {
    churn: Vec<K>,
    /// Deleted positions waiting for their grace period.
    pending: VecDeque<(Instant, i32)>,
}

impl<K: HashKey> HashContender<K> {
    /// Creates the hash (room for the rules, the writer's window, the slots waiting for their
    /// grace period and a burst) and adds every rule.
    pub fn build(keys: &Keys) -> Result<Self, String> {
        let entries = u32::try_from(keys.rules.len() + CHURN_WINDOW + GRACE_SLOTS + BURST)
            .map_err(|_| "too many rules for rte_hash".to_string())?;
        let name = CString::new(unique_name("fsb_hash_"))
            .map_err(|_| "hash name holds a NUL byte".to_string())?;
        let params = ffi::rte_hash_parameters {
            name: name.as_ptr(),
            entries,
            key_len: std::mem::size_of::<K>() as u32,
            socket_id: ffi::SOCKET_ID_ANY,
            extra_flag: ffi::RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF as u8,
            ..Default::default()
        };
        // SAFETY: the EAL is up (the caller checked dpdk_ready); params and the name it points
        // to are valid for the call, and DPDK copies the name.
        let raw = unsafe { ffi::rte_hash_create(&params) };
        let hash = RawHash(NonNull::new(raw).ok_or_else(|| {
            // SAFETY: reads the calling thread's rte_errno right after the failed call.
            let errno = unsafe { ffi::dpdk_sys_errno() };
            format!("rte_hash_create of {entries} entries failed (rte_errno {errno})")
        })?);
        for (i, k) in keys.rules.iter().enumerate() {
            let key = K::of(k);
            // SAFETY: the hash is alive, no other thread uses it yet; the key is key_len
            // readable bytes, copied by DPDK; the data is an integer stored as a pointer, never
            // dereferenced.
            let rc = unsafe {
                ffi::rte_hash_add_key_data(
                    hash.0.as_ptr(),
                    key.bytes(),
                    usize::from(owner_of(i)) as *mut c_void,
                )
            };
            if rc != 0 {
                return Err(format!("rte_hash_add_key_data of rule {i} failed: {rc}"));
            }
        }
        Ok(HashContender {
            hash,
            hits: keys.hits.iter().map(K::of).collect(),
            misses: keys.misses.iter().map(K::of).collect(),
            writer: Mutex::new(HashWriter {
                churn: keys.churn.iter().map(K::of).collect(),
                pending: VecDeque::new(),
            }),
        })
    }

    /// Looks up `keys` (at most [`BURST`]) into `data`; returns the hit mask.
    #[inline]
    fn lookup(&self, keys: &[K], data: &mut [usize; BURST]) -> u64 {
        let n = keys.len().min(BURST);
        let mut ptrs = [std::ptr::null::<c_void>(); BURST];
        for (p, k) in ptrs.iter_mut().zip(keys) {
            *p = k.bytes();
        }
        let mut hit_mask = 0u64;
        // SAFETY: the hash is alive for &self; ptrs holds n pointers to keys of key_len bytes
        // that outlive the call; data has room for n pointer-sized values (usize and *mut c_void
        // have the same size and alignment), which DPDK writes only for hits; n <= 32 <=
        // RTE_HASH_LOOKUP_BULK_MAX. Lookups are lock-free and may run concurrently with the
        // single writer.
        unsafe {
            ffi::rte_hash_lookup_bulk_data(
                self.hash.0.as_ptr(),
                ptrs.as_mut_ptr(),
                n as u32,
                &mut hit_mask,
                data.as_mut_ptr().cast::<*mut c_void>(),
            );
        }
        hit_mask
    }
}

impl<K: HashKey> Contender for HashContender<K> {
    fn name(&self) -> String {
        K::NAME.to_string()
    }

    #[inline]
    fn lookup_burst(&self, hit: bool, start: usize, scratch: &mut Scratch) -> usize {
        let keys = if hit { &self.hits } else { &self.misses };
        self.lookup(&keys[start..start + BURST], &mut scratch.data)
            .count_ones() as usize
    }

    fn verify(&self, keys: &Keys) -> Result<(), String> {
        let mut data = [0usize; BURST];
        for (i, chunk) in keys.rules.chunks(BURST).enumerate() {
            let forms: Vec<K> = chunk.iter().map(K::of).collect();
            let mask = self.lookup(&forms, &mut data);
            for (j, owner) in data.iter().enumerate().take(chunk.len()) {
                let rule = i * BURST + j;
                if mask & (1 << j) == 0 || *owner != usize::from(owner_of(rule)) {
                    return Err(format!("{}: rule {rule} not found with its owner", K::NAME));
                }
            }
        }
        for chunk in self.misses.chunks(BURST) {
            if self.lookup(chunk, &mut data) != 0 {
                return Err(format!("{}: a miss key was found", K::NAME));
            }
        }
        Ok(())
    }

    fn with_writer(&self, f: &mut dyn FnMut(&mut dyn ChurnWriter)) {
        // Poisoned only if an earlier writer panicked, which resume_unwind already reported.
        let mut guard = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut writer = WriterHandle {
            hash: self.hash.0,
            state: &mut guard,
        };
        f(&mut writer);
    }
}

/// The writer side, alive while the writer thread holds the contender's Mutex.
struct WriterHandle<'a, K: HashKey> {
    hash: NonNull<ffi::rte_hash>,
    state: &'a mut HashWriter<K>,
}

impl<K: HashKey> WriterHandle<'_, K> {
    /// Frees the positions whose grace period is over (all of them with `all`); returns how
    /// many frees DPDK refused.
    fn free_due(&mut self, all: bool) -> u64 {
        let now = Instant::now();
        let mut refused = 0;
        while let Some(&(deleted, position)) = self.state.pending.front() {
            if !all && now.duration_since(deleted) < FREE_DELAY {
                break;
            }
            self.state.pending.pop_front();
            // SAFETY: position came from rte_hash_del_key on this hash and is freed once; the
            // grace period (or, with `all`, the end of every reader) has passed.
            if unsafe { ffi::rte_hash_free_key_with_position(self.hash.as_ptr(), position) } != 0 {
                refused += 1;
            }
        }
        refused
    }
}

impl<K: HashKey> ChurnWriter for WriterHandle<'_, K> {
    fn insert(&mut self, index: usize) -> bool {
        let key = &self.state.churn[index % self.state.churn.len()];
        // SAFETY: the hash is alive; this is the only writer (Mutex); the key is key_len bytes.
        let rc = unsafe {
            ffi::rte_hash_add_key_data(
                self.hash.as_ptr(),
                key.bytes(),
                usize::from(owner_of(index)) as *mut c_void,
            )
        };
        rc == 0
    }

    fn remove(&mut self, index: usize) -> bool {
        let key = &self.state.churn[index % self.state.churn.len()];
        // SAFETY: as in insert.
        let position = unsafe { ffi::rte_hash_del_key(self.hash.as_ptr(), key.bytes()) };
        if position < 0 {
            return false;
        }
        self.state.pending.push_back((Instant::now(), position));
        true
    }

    fn tick(&mut self) -> u64 {
        self.free_due(false)
    }

    fn finish(&mut self) -> u64 {
        // The writer stops after the readers' last repetition has joined.
        self.free_due(true)
    }
}

/// rte_ring producers: the handles are converted to pointers per burst.
struct RingEnqueue {
    producer: dpdk_sys::MpProducer,
    scratch: Vec<*mut c_void>,
}

// SAFETY: the raw pointers in `scratch` are plain integers copied into the ring, never
// dereferenced; MpProducer itself is Send.
unsafe impl Send for RingEnqueue {}

impl Enqueue for RingEnqueue {
    #[inline]
    fn enqueue(&mut self, batch: &mut Vec<usize>) {
        self.scratch.clear();
        self.scratch.extend(batch.iter().map(|&v| v as *mut c_void));
        let n = self.producer.enqueue_burst(&self.scratch);
        batch.drain(..n);
    }
}

struct RingDequeue {
    consumer: dpdk_sys::RingConsumer,
    scratch: Vec<*mut c_void>,
}

// SAFETY: as for RingEnqueue; RingConsumer is Send.
unsafe impl Send for RingDequeue {}

impl Dequeue for RingDequeue {
    #[inline]
    fn dequeue(&mut self, out: &mut Vec<usize>, max: usize) -> usize {
        if self.scratch.len() < max {
            self.scratch.resize(max, std::ptr::null_mut());
        }
        let n = self.consumer.dequeue_burst(&mut self.scratch[..max]);
        out.extend(self.scratch[..n].iter().map(|&p| p as usize));
        n
    }
}

/// One repetition of the software-queue experiment on a fresh MP/SC rte_ring.
pub fn ring_rep(shape: Shape, duration: Duration) -> Result<f64, String> {
    let capacity =
        u32::try_from(swq::ring_size()).map_err(|_| "ring size above u32".to_string())?;
    let (producer, consumer) =
        Ring::mpsc(&unique_name("fsb_swq_"), capacity).map_err(|e| e.to_string())?;
    let producers = (0..shape.producers)
        .map(|_| RingEnqueue {
            producer: producer.clone(),
            scratch: Vec::with_capacity(shape.burst),
        })
        .collect();
    drop(producer);
    let consumer = RingDequeue {
        consumer,
        scratch: vec![std::ptr::null_mut(); shape.drain],
    };
    swq::rep(producers, consumer, shape, duration)
}

/// `rte_softrss` through the shim's bulk entry point (one call per range, DPDK's loop inside).
pub fn softrss_hashers<'a>(
    words: &'a [[u32; 3]],
    key: &'a [u8; 40],
) -> Vec<(String, TupleHasher<'a>)> {
    let hasher: TupleHasher<'a> = Box::new(move |range: Range<usize>| {
        let tuples = &words[range];
        let mut hashes = [0u32; 64];
        let mut acc = 0;
        for chunk in tuples.chunks(hashes.len()) {
            // SAFETY: chunk holds chunk.len() tuples of 3 contiguous u32 words ([u32; 3] has no
            // padding), which rte_softrss reads and never writes; hashes has room for
            // chunk.len() <= 64 results; key is the 40-byte RSS key DPDK reads.
            unsafe {
                ffi::dpdk_sys_softrss_bulk(
                    chunk.as_ptr().cast::<u32>().cast_mut(),
                    3,
                    chunk.len() as u32,
                    key.as_ptr(),
                    hashes.as_mut_ptr(),
                );
            }
            acc = hashes[..chunk.len()].iter().fold(acc, |a, h| a ^ h);
        }
        acc
    });
    vec![("rte_softrss".to_string(), hasher)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_table::measure_for_test;

    /// The EAL needs root here; without it the DPDK tests say so and pass, except under
    /// `CI=true`, where they must run.
    fn eal_or_skip() -> bool {
        match eal_init() {
            Ok(()) => true,
            Err(e) => {
                flowsteer_testrig::skip(&e);
                false
            }
        }
    }

    fn holds_the_rules_and_survives_the_writer<K: HashKey>() {
        let keys = Keys::new(4096, 4096);
        let contender = HashContender::<K>::build(&keys).unwrap();
        contender.verify(&keys).unwrap();
        let failures = measure_for_test(&contender, &keys);
        assert_eq!(failures, 0, "{}", K::NAME);
        // Every churn key went again, every slot was freed: the rules are all still found.
        contender.verify(&keys).unwrap();
    }

    #[test]
    fn rte_hash_holds_the_rules_and_survives_the_writer() {
        if !eal_or_skip() {
            return;
        }
        holds_the_rules_and_survives_the_writer::<[u8; 48]>();
        holds_the_rules_and_survives_the_writer::<[u8; 16]>();
    }

    #[test]
    fn the_ipv4_form_keeps_every_field_apart() {
        let keys = Keys::new(4096, 4096);
        let forms: std::collections::HashSet<[u8; 16]> = keys
            .rules
            .iter()
            .chain(&keys.misses)
            .chain(&keys.churn)
            .map(<[u8; 16]>::of)
            .collect();
        assert_eq!(
            forms.len(),
            keys.rules.len() + keys.misses.len() + keys.churn.len()
        );
    }

    #[test]
    fn rte_ring_keeps_order_and_loses_nothing() {
        if !eal_or_skip() {
            return;
        }
        let shape = Shape {
            producers: 2,
            burst: 32,
            drain: 64,
        };
        assert!(ring_rep(shape, Duration::from_millis(30)).unwrap() > 0.0);
    }

    #[test]
    fn rte_softrss_agrees_with_our_toeplitz() {
        if !eal_or_skip() {
            return;
        }
        let tuples = crate::softrss::Tuples::new(256);
        let key = flowsteer_nic::rss::MICROSOFT_KEY;
        let toeplitz = flowsteer_nic::rss::Toeplitz::new(&key);
        let hashers = softrss_hashers(&tuples.words, &key);
        for (i, t) in tuples.ours.iter().enumerate() {
            assert_eq!(hashers[0].1(i..i + 1), toeplitz.hash_tuple(t), "tuple {i}");
        }
    }
}
