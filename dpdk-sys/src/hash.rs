use std::alloc::{self, Layout};
use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::{eal, ffi, Error};

/// What [`Hash::new`] and [`QsbrHash::new`] create.
#[derive(Debug, Clone)]
pub struct HashConfig<'a> {
    /// Unique among the process's hashes; at most `RTE_HASH_NAMESIZE - 1` (31) bytes, and DPDK
    /// derives ring and memzone names from it, so keep it under about 24.
    pub name: &'a str,
    /// Capacity in keys. With lock-free readers DPDK sizes the table for exactly this many.
    pub entries: u32,
    /// Key length in bytes; every key passed to the table must have exactly this length.
    pub key_len: u32,
    /// NUMA socket for the table memory, [`ffi::SOCKET_ID_ANY`] for any.
    pub socket_id: i32,
    /// `RTE_HASH_EXTRA_FLAGS_EXT_TABLE`: chain overflowing buckets so an insert fails only when
    /// `entries` keys are stored, not when a cuckoo path cannot be found.
    pub ext_table: bool,
}

/// The table shared by [`Hash`](struct@Hash) and [`QsbrHash`]: an `rte_hash` created with
/// `RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF` (lock-free readers, DPDK's default CRC32 hash on
/// x86) and a Rust mutex serialising writers.
///
/// Writers are serialised here rather than with `RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD` because
/// that flag makes every insert index a per-lcore array with `rte_lcore_id()`, which is
/// `LCORE_ID_ANY` (out of bounds) on threads the EAL did not create.
struct Table {
    ptr: NonNull<ffi::rte_hash>,
    key_len: usize,
    writer: Mutex<()>,
}

// SAFETY: with RW_CONCURRENCY_LF, rte_hash lookups may run on any number of threads concurrently
// with one writer; Table serialises writers with its mutex, so every method is safe to call from
// any thread at any time.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("ptr", &self.ptr)
            .field("key_len", &self.key_len)
            .finish_non_exhaustive()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: created by rte_hash_create and freed once; no borrow of the table survives
        // (readers of a QsbrHash borrow it, so none is alive either).
        unsafe { ffi::rte_hash_free(self.ptr.as_ptr()) }
    }
}

impl Table {
    fn create(config: &HashConfig<'_>) -> Result<Self, Error> {
        const OP: &str = "rte_hash_create";
        eal::ensure(OP)?;
        if config.name.len() >= ffi::RTE_HASH_NAMESIZE as usize {
            return Err(Error::invalid(
                OP,
                format!(
                    "name {:?} is longer than {} bytes",
                    config.name,
                    ffi::RTE_HASH_NAMESIZE - 1
                ),
            ));
        }
        if config.key_len == 0 || config.entries == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "key_len and entries must be at least 1, got {} and {}",
                    config.key_len, config.entries
                ),
            ));
        }
        let name = CString::new(config.name).map_err(|_| {
            Error::invalid(OP, format!("name {:?} contains a NUL byte", config.name))
        })?;
        let mut flags = ffi::RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
        if config.ext_table {
            flags |= ffi::RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
        }
        let params = ffi::rte_hash_parameters {
            name: name.as_ptr(),
            entries: config.entries,
            key_len: config.key_len,
            // None selects DPDK's default, rte_hash_crc (SSE4.2 CRC32) on x86.
            hash_func: None,
            hash_func_init_val: 0,
            socket_id: config.socket_id,
            extra_flag: flags as u8,
            ..Default::default()
        };
        // SAFETY: the EAL is initialised; params and the name it points to outlive the call
        // (DPDK copies the name).
        let raw = unsafe { ffi::rte_hash_create(&params) };
        let ptr = NonNull::new(raw).ok_or_else(|| Error::last(OP))?;
        Ok(Table {
            ptr,
            key_len: config.key_len as usize,
            writer: Mutex::new(()),
        })
    }

    fn check_key(&self, op: &'static str, len: usize) -> Result<(), Error> {
        if len == self.key_len {
            Ok(())
        } else {
            Err(Error::invalid(
                op,
                format!(
                    "key is {len} bytes, the table's key_len is {}",
                    self.key_len
                ),
            ))
        }
    }

    fn add(&self, key: &[u8], data: usize) -> Result<(), Error> {
        const OP: &str = "rte_hash_add_key_data";
        self.check_key(OP, key.len())?;
        // The guarded state lives in C and stays consistent if a writer panicked, so a
        // poisoned lock is still a valid lock.
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: key has key_len readable bytes; writers are serialised by the mutex, readers
        // are lock-free by the table's flags. data is stored as an opaque pointer value.
        let rc = unsafe {
            ffi::rte_hash_add_key_data(self.ptr.as_ptr(), key.as_ptr().cast(), data as *mut c_void)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::from_code(OP, rc))
        }
    }

    fn delete(&self, key: &[u8]) -> Result<Option<i32>, Error> {
        const OP: &str = "rte_hash_del_key";
        self.check_key(OP, key.len())?;
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as for add.
        let rc = unsafe { ffi::rte_hash_del_key(self.ptr.as_ptr(), key.as_ptr().cast()) };
        match rc {
            pos if pos >= 0 => Ok(Some(pos)),
            rc if rc == -(ENOENT) => Ok(None),
            rc => Err(Error::from_code(OP, rc)),
        }
    }

    fn lookup(&self, key: &[u8]) -> Result<Option<usize>, Error> {
        const OP: &str = "rte_hash_lookup_data";
        self.check_key(OP, key.len())?;
        let mut data: *mut c_void = std::ptr::null_mut();
        // SAFETY: key has key_len bytes; lookups are lock-free and safe concurrently with the
        // serialised writer.
        let rc =
            unsafe { ffi::rte_hash_lookup_data(self.ptr.as_ptr(), key.as_ptr().cast(), &mut data) };
        match rc {
            pos if pos >= 0 => Ok(Some(data as usize)),
            rc if rc == -(ENOENT) => Ok(None),
            rc => Err(Error::from_code(OP, rc)),
        }
    }

    #[inline]
    fn check_bulk<const N: usize>(
        &self,
        op: &'static str,
        keys: usize,
        out: usize,
    ) -> Result<u32, Error> {
        if N != self.key_len || keys > ffi::RTE_HASH_LOOKUP_BULK_MAX as usize || out < keys {
            return Err(Error::invalid(
                op,
                format!(
                    "{keys} keys of {N} bytes into {out} outputs; the table takes up to {} keys \
                     of {} bytes per call",
                    ffi::RTE_HASH_LOOKUP_BULK_MAX,
                    self.key_len
                ),
            ));
        }
        Ok(keys as u32)
    }

    #[inline]
    fn lookup_bulk_data<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        data: &mut [usize],
    ) -> Result<u64, Error> {
        const OP: &str = "rte_hash_lookup_bulk_data";
        let n = self.check_bulk::<N>(OP, keys.len(), data.len())?;
        let mut hits = 0u64;
        // SAFETY: `&[u8; N]` is a thin non-null pointer, so keys is an array of n valid key
        // pointers of key_len bytes (checked), which DPDK only reads despite the `*mut` in the
        // signature; `usize` and `*mut c_void` have the same size and alignment, so data is an
        // array of at least n pointer slots. Lookups are lock-free.
        let rc = unsafe {
            ffi::rte_hash_lookup_bulk_data(
                self.ptr.as_ptr(),
                keys.as_ptr() as *mut *const c_void,
                n,
                &mut hits,
                data.as_mut_ptr().cast::<*mut c_void>(),
            )
        };
        if rc < 0 {
            return Err(Error::from_code(OP, rc));
        }
        Ok(hits)
    }

    #[inline]
    fn lookup_bulk<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        positions: &mut [i32],
    ) -> Result<(), Error> {
        const OP: &str = "rte_hash_lookup_bulk";
        let n = self.check_bulk::<N>(OP, keys.len(), positions.len())?;
        // SAFETY: as in lookup_bulk_data; positions has room for n entries.
        let rc = unsafe {
            ffi::rte_hash_lookup_bulk(
                self.ptr.as_ptr(),
                keys.as_ptr() as *mut *const c_void,
                n,
                positions.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(Error::from_code(OP, rc));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        // SAFETY: rte_hash_count only reads counters of a live table.
        let n = unsafe { ffi::rte_hash_count(self.ptr.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }
}

const ENOENT: i32 = 2;

/// `rte_hash` with lock-free readers (`RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF`) and no memory
/// reclamation: a deleted key's slot is not reused until [`free_position`](Self::free_position)
/// is called, so a table with heavy churn fills up unless the caller reclaims (use
/// [`QsbrHash`] for automatic, RCU-safe reclamation).
///
/// Concurrency: any number of threads may look up at once, concurrently with writers; writers
/// (add / delete) are serialised by an internal mutex.
///
/// Cost: `lookup_bulk_data` of up to 64 keys is one call into `librte_hash` (a PLT call, no
/// shim) that hashes every key, prefetches both candidate buckets, compares 16-bit signatures
/// then keys, and re-reads a per-table change counter to retry if a writer moved a key; no
/// store to shared memory. An add or delete takes the mutex (uncontended: two atomic RMWs) plus
/// DPDK's cuckoo insert.
#[derive(Debug)]
pub struct Hash {
    table: Table,
}

impl Hash {
    /// Creates the table (see [`HashConfig`]); the EAL must be initialised.
    pub fn new(config: &HashConfig<'_>) -> Result<Self, Error> {
        Ok(Hash {
            table: Table::create(config)?,
        })
    }

    /// Inserts `key` with the value `data`, or replaces the value of an existing key. Fails with
    /// `ENOSPC` when the table is full.
    pub fn add(&self, key: &[u8], data: usize) -> Result<(), Error> {
        self.table.add(key, data)
    }

    /// Removes `key`, returning the key slot's position (`None` if the key was absent). The
    /// slot stays allocated until [`free_position`](Self::free_position).
    pub fn delete(&self, key: &[u8]) -> Result<Option<i32>, Error> {
        self.table.delete(key)
    }

    /// Returns a deleted key's slot to the free list (`rte_hash_free_key_with_position`).
    ///
    /// # Safety
    /// No lookup that started before the delete that returned `position` may still be running
    /// (otherwise it may read the slot while a new insert rewrites it), and `position` must come
    /// from [`delete`](Self::delete) on this table and be freed only once.
    pub unsafe fn free_position(&self, position: i32) -> Result<(), Error> {
        const OP: &str = "rte_hash_free_key_with_position";
        let _writer = self.table.writer.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the caller guarantees no reader still uses the slot; writers are serialised.
        let rc = unsafe { ffi::rte_hash_free_key_with_position(self.table.ptr.as_ptr(), position) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::from_code(OP, rc))
        }
    }

    /// The value stored for `key`, `None` if absent.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<usize>, Error> {
        self.table.lookup(key)
    }

    /// Looks up to 64 keys; sets `data[i]` for every hit and returns the hit mask (bit `i` set
    /// when `keys[i]` was found). Fails without looking up when `N` is not the table's key
    /// length, when there are more than 64 keys, or when `data` is shorter than `keys`.
    #[inline]
    pub fn lookup_bulk_data<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        data: &mut [usize],
    ) -> Result<u64, Error> {
        self.table.lookup_bulk_data(keys, data)
    }

    /// Looks up to 64 keys; `positions[i]` is the key's slot, or `-ENOENT`. Same checks as
    /// [`lookup_bulk_data`](Self::lookup_bulk_data).
    #[inline]
    pub fn lookup_bulk<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        positions: &mut [i32],
    ) -> Result<(), Error> {
        self.table.lookup_bulk(keys, positions)
    }

    /// Keys stored (`rte_hash_count`, derived from the free-slot ring: a snapshot, not for the
    /// hot path).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying `rte_hash`.
    pub fn as_ptr(&self) -> *mut ffi::rte_hash {
        self.table.ptr.as_ptr()
    }
}

/// `rte_hash` with lock-free readers and RCU reclamation (`rte_hash_rcu_qsbr_add`, defer-queue
/// mode): a deleted key's slot is reused once every registered reader has reported a quiescent
/// state since the delete, which is how DPDK recommends running a table under churn.
///
/// Readers are [`QsbrReader`]s, one per reading thread, each with its own thread id below
/// `max_readers`. A reader reports a quiescent state with [`QsbrReader::quiescent`] (once per
/// burst, as a stack thread would); a reader that stays registered but stops reporting holds
/// back reclamation (deletes keep working; inserts fail with `ENOSPC` once every free slot is
/// waiting). Dropping a reader takes it offline.
///
/// Cost: as [`Hash`](struct@Hash), plus per reader one shim call per quiescent report (one
/// load of the global token, one release store to the reader's own cache line); per delete, one
/// enqueue on the defer queue; inserts reclaim in batches when the defer queue passes its
/// threshold.
#[derive(Debug)]
pub struct QsbrHash {
    // Field order is drop order: the table (and its defer queue, which reads the QSBR variable
    // while deleting) goes before the QSBR memory.
    table: Table,
    qsbr: QsbrMemory,
    slots: Box<[AtomicBool]>,
}

#[derive(Debug)]
struct QsbrMemory {
    ptr: NonNull<ffi::rte_rcu_qsbr>,
    layout: Layout,
}

// SAFETY: the QSBR variable is designed for concurrent use by writers and registered readers;
// QsbrMemory only owns its allocation.
unsafe impl Send for QsbrMemory {}
// SAFETY: as above.
unsafe impl Sync for QsbrMemory {}

impl Drop for QsbrMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in QsbrHash::new with exactly this layout, freed once, after the
        // table that referenced it (field order of QsbrHash).
        unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) }
    }
}

impl QsbrHash {
    /// Creates the table and a QSBR variable for `max_readers` reader threads (ids
    /// `0..max_readers`), and attaches them in defer-queue mode.
    pub fn new(config: &HashConfig<'_>, max_readers: u32) -> Result<Self, Error> {
        const OP: &str = "rte_hash_rcu_qsbr_add";
        if max_readers == 0 {
            return Err(Error::invalid(
                OP,
                "max_readers must be at least 1".to_owned(),
            ));
        }
        let table = Table::create(config)?;
        // SAFETY: pure size computation.
        let size = unsafe { ffi::rte_rcu_qsbr_get_memsize(max_readers) };
        if size == usize::MAX || size == 0 {
            return Err(Error::last("rte_rcu_qsbr_get_memsize"));
        }
        let layout = Layout::from_size_align(size, ffi::RTE_CACHE_LINE_SIZE as usize)
            .map_err(|e| Error::invalid(OP, format!("QSBR size {size}: {e}")))?;
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) }.cast::<ffi::rte_rcu_qsbr>();
        let ptr = NonNull::new(raw).ok_or_else(|| {
            Error::invalid(
                OP,
                format!("cannot allocate {size} bytes for the QSBR variable"),
            )
        })?;
        let qsbr = QsbrMemory { ptr, layout };
        // SAFETY: qsbr points to get_memsize(max_readers) zeroed, cache-line aligned bytes.
        let rc = unsafe { ffi::rte_rcu_qsbr_init(qsbr.ptr.as_ptr(), max_readers) };
        if rc != 0 {
            return Err(Error::last("rte_rcu_qsbr_init"));
        }
        let mut cfg = ffi::rte_hash_rcu_config {
            v: qsbr.ptr.as_ptr(),
            mode: ffi::RTE_HASH_QSBR_MODE_DQ,
            ..Default::default()
        };
        // SAFETY: the table and the QSBR variable are alive and owned together by the returned
        // value, which frees the table first; no reader exists yet.
        let rc = unsafe { ffi::rte_hash_rcu_qsbr_add(table.ptr.as_ptr(), &mut cfg) };
        if rc != 0 {
            return Err(Error::last(OP));
        }
        let slots = (0..max_readers).map(|_| AtomicBool::new(false)).collect();
        Ok(QsbrHash { table, qsbr, slots })
    }

    /// Registers reader `thread_id` (below `max_readers`, not held by another live reader) and
    /// puts it online. Call it on the thread that will read.
    pub fn reader(&self, thread_id: u32) -> Result<QsbrReader<'_>, Error> {
        const OP: &str = "rte_rcu_qsbr_thread_register";
        let slot = self.slots.get(thread_id as usize).ok_or_else(|| {
            Error::invalid(
                OP,
                format!(
                    "thread id {thread_id} is not below max_readers {}",
                    self.slots.len()
                ),
            )
        })?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(Error::invalid(
                OP,
                format!("thread id {thread_id} belongs to another live reader"),
            ));
        }
        let v = self.qsbr.ptr.as_ptr();
        // SAFETY: v is initialised for max_readers ids and thread_id is below it and owned
        // exclusively by this reader (slot claimed above).
        let rc = unsafe { ffi::rte_rcu_qsbr_thread_register(v, thread_id) };
        if rc != 0 {
            slot.store(false, Ordering::Release);
            return Err(Error::last(OP));
        }
        // SAFETY: registered above; online makes writers wait for this reader's reports.
        unsafe { ffi::dpdk_sys_rcu_qsbr_thread_online(v, thread_id) };
        Ok(QsbrReader {
            hash: self,
            thread_id,
            _not_sync: PhantomData,
        })
    }

    /// As [`Hash::add`]; may first reclaim slots whose readers have all moved on.
    pub fn add(&self, key: &[u8], data: usize) -> Result<(), Error> {
        self.table.add(key, data)
    }

    /// Removes `key` (returns whether it was present); its slot is reclaimed after a grace
    /// period.
    pub fn delete(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.table.delete(key)?.is_some())
    }

    /// Keys stored (not for the hot path).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registered, online reader of a [`QsbrHash`]. `Send` (its id is not tied to an OS thread)
/// but not `Sync`: one thread at a time uses one reader id, which is what QSBR requires.
#[derive(Debug)]
pub struct QsbrReader<'a> {
    hash: &'a QsbrHash,
    thread_id: u32,
    _not_sync: PhantomData<Cell<()>>,
}

impl QsbrReader<'_> {
    /// As [`Hash::lookup_bulk_data`]. Values are copied out, so nothing returned refers to
    /// table memory after the call.
    #[inline]
    pub fn lookup_bulk_data<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        data: &mut [usize],
    ) -> Result<u64, Error> {
        self.hash.table.lookup_bulk_data(keys, data)
    }

    /// As [`Hash::lookup_bulk`].
    #[inline]
    pub fn lookup_bulk<const N: usize>(
        &self,
        keys: &[&[u8; N]],
        positions: &mut [i32],
    ) -> Result<(), Error> {
        self.hash.table.lookup_bulk(keys, positions)
    }

    /// As [`Hash::lookup`].
    pub fn lookup(&self, key: &[u8]) -> Result<Option<usize>, Error> {
        self.hash.table.lookup(key)
    }

    /// Reports a quiescent state: this reader holds no reference into the table (always true
    /// between calls, since lookups copy values out). Call once per burst.
    #[inline]
    pub fn quiescent(&self) {
        // SAFETY: this reader's id is registered and online, and only this (non-Sync) handle
        // reports for it.
        unsafe { ffi::dpdk_sys_rcu_qsbr_quiescent(self.hash.qsbr.ptr.as_ptr(), self.thread_id) }
    }

    /// This reader's QSBR thread id.
    pub fn thread_id(&self) -> u32 {
        self.thread_id
    }
}

impl Drop for QsbrReader<'_> {
    fn drop(&mut self) {
        let v = self.hash.qsbr.ptr.as_ptr();
        // SAFETY: the id was registered and put online by QsbrHash::reader and is owned by this
        // reader; offline then unregister makes writers stop waiting for it.
        unsafe {
            ffi::dpdk_sys_rcu_qsbr_thread_offline(v, self.thread_id);
            ffi::rte_rcu_qsbr_thread_unregister(v, self.thread_id);
        }
        self.hash.slots[self.thread_id as usize].store(false, Ordering::Release);
    }
}
