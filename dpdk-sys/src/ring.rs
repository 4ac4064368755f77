use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{eal, ffi, Error};

/// An `rte_ring` of pointer-sized objects with one consumer, split into producer and consumer
/// handles so that the single-producer / single-consumer contracts are enforced by the types.
///
/// The ring stores the pointers only; it never dereferences them, so any `usize`-sized handle
/// cast to `*mut c_void` works (an index, an mbuf pointer).
///
/// Cost (DPDK 22.11, default MP/SC "legacy" sync mode): one enqueue burst is one shim call, one
/// CAS on the shared producer head (MP) or a plain store (SP), the copies, then a wait until
/// earlier concurrent producers have published and one release store of the tail. A producer
/// descheduled between its CAS and its tail store stalls every later producer (the reason DPDK
/// has the RTS/HTS modes). One dequeue burst is one shim call, no CAS, one release store.
#[derive(Debug)]
pub struct Ring;

struct Inner {
    ptr: NonNull<ffi::rte_ring>,
    capacity: u32,
}

// SAFETY: rte_ring is a shared-memory structure designed for use from several threads; which
// operations may run concurrently is restricted by the handle types below, not by Inner.
unsafe impl Send for Inner {}
// SAFETY: as above; Inner itself only exposes the thread-safe count queries.
unsafe impl Sync for Inner {}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("ptr", &self.ptr)
            .field("capacity", &self.capacity)
            .field("len", &self.count())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the ring was created by rte_ring_create; the last handle frees it once.
        unsafe { ffi::rte_ring_free(self.ptr.as_ptr()) }
    }
}

impl Inner {
    fn create(name: &str, capacity: u32, flags: u32) -> Result<Arc<Self>, Error> {
        const OP: &str = "rte_ring_create";
        eal::ensure(OP)?;
        if capacity == 0 || capacity > ffi::RTE_RING_SZ_MASK {
            return Err(Error::invalid(
                OP,
                format!(
                    "capacity must be 1..={}, got {capacity}",
                    ffi::RTE_RING_SZ_MASK
                ),
            ));
        }
        let cname = CString::new(name)
            .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
        // SAFETY: the EAL is initialised; cname outlives the call (DPDK copies the name).
        // RING_F_EXACT_SZ makes the usable capacity exactly `capacity` (DPDK rounds the storage
        // up to a power of two above it).
        let raw = unsafe {
            ffi::rte_ring_create(
                cname.as_ptr(),
                capacity,
                ffi::SOCKET_ID_ANY,
                flags | ffi::RING_F_EXACT_SZ | ffi::RING_F_SC_DEQ,
            )
        };
        let ptr = NonNull::new(raw).ok_or_else(|| Error::last(OP))?;
        Ok(Arc::new(Inner { ptr, capacity }))
    }

    fn count(&self) -> u32 {
        // SAFETY: the ring is alive; rte_ring_count reads the head/tail indices only.
        unsafe { ffi::dpdk_sys_ring_count(self.ptr.as_ptr()) }
    }
}

impl Ring {
    /// A multi-producer / single-consumer ring holding up to `capacity` objects. `name` must be
    /// unique among the process's rings (at most 26 bytes: DPDK reserves a memzone for it).
    pub fn mpsc(name: &str, capacity: u32) -> Result<(MpProducer, RingConsumer), Error> {
        let inner = Inner::create(name, capacity, 0)?;
        Ok((
            MpProducer {
                inner: Arc::clone(&inner),
            },
            RingConsumer { inner },
        ))
    }

    /// A single-producer / single-consumer ring (the producer head moves with a plain store).
    pub fn spsc(name: &str, capacity: u32) -> Result<(SpProducer, RingConsumer), Error> {
        let inner = Inner::create(name, capacity, ffi::RING_F_SP_ENQ)?;
        Ok((
            SpProducer {
                inner: Arc::clone(&inner),
            },
            RingConsumer { inner },
        ))
    }
}

/// The producer side of [`Ring::mpsc`]: clone it into every producing thread; all may enqueue
/// at once (`rte_ring_mp_enqueue_burst`).
#[derive(Clone, Debug)]
pub struct MpProducer {
    inner: Arc<Inner>,
}

impl MpProducer {
    /// Enqueues as many leading objects of `objs` as fit (up to the free space) and returns that
    /// number; never blocks on a full ring. Cost: see [`Ring`].
    #[inline]
    pub fn enqueue_burst(&self, objs: &[*mut c_void]) -> usize {
        let n = u32::try_from(objs.len()).unwrap_or(u32::MAX);
        // SAFETY: the ring is alive (Arc) and was created multi-producer, so concurrent calls
        // from any number of MpProducer clones are allowed; objs holds at least n pointers,
        // which the ring copies without dereferencing.
        let done = unsafe {
            ffi::dpdk_sys_ring_mp_enqueue_burst(
                self.inner.ptr.as_ptr(),
                objs.as_ptr(),
                n,
                std::ptr::null_mut(),
            )
        };
        done as usize
    }

    /// Objects in the ring (a snapshot).
    pub fn len(&self) -> u32 {
        self.inner.count()
    }

    /// Whether the ring held no object at the moment of the call.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable capacity given at creation.
    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }
}

/// The producer side of [`Ring::spsc`]: one thread at a time, enforced by `&mut self`
/// (`rte_ring_sp_enqueue_burst`).
#[derive(Debug)]
pub struct SpProducer {
    inner: Arc<Inner>,
}

impl SpProducer {
    /// As [`MpProducer::enqueue_burst`], with no CAS.
    #[inline]
    pub fn enqueue_burst(&mut self, objs: &[*mut c_void]) -> usize {
        let n = u32::try_from(objs.len()).unwrap_or(u32::MAX);
        // SAFETY: the ring is alive and single-producer; &mut self on the only SpProducer
        // guarantees one enqueuer at a time. objs holds at least n pointers.
        let done = unsafe {
            ffi::dpdk_sys_ring_sp_enqueue_burst(
                self.inner.ptr.as_ptr(),
                objs.as_ptr(),
                n,
                std::ptr::null_mut(),
            )
        };
        done as usize
    }

    /// The usable capacity given at creation.
    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }
}

/// The single consumer of a [`Ring`]: one per ring, dequeuing through `&mut self`
/// (`rte_ring_sc_dequeue_burst`).
#[derive(Debug)]
pub struct RingConsumer {
    inner: Arc<Inner>,
}

impl RingConsumer {
    /// Dequeues up to `out.len()` objects into the front of `out` and returns how many; 0 when
    /// the ring is empty (never blocks). Cost: see [`Ring`].
    #[inline]
    pub fn dequeue_burst(&mut self, out: &mut [*mut c_void]) -> usize {
        let n = u32::try_from(out.len()).unwrap_or(u32::MAX);
        // SAFETY: the ring is alive and single-consumer; &mut self on the only RingConsumer
        // guarantees one dequeuer at a time. out has room for n pointers.
        let done = unsafe {
            ffi::dpdk_sys_ring_sc_dequeue_burst(
                self.inner.ptr.as_ptr(),
                out.as_mut_ptr(),
                n,
                std::ptr::null_mut(),
            )
        };
        done as usize
    }

    /// Objects in the ring (a snapshot).
    pub fn len(&self) -> u32 {
        self.inner.count()
    }

    /// Whether the ring held no object at the moment of the call.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying `rte_ring` (for `rte_eth_from_rings` or other raw calls). The caller must
    /// keep to the single-consumer contract.
    pub fn as_ptr(&self) -> *mut ffi::rte_ring {
        self.inner.ptr.as_ptr()
    }
}
