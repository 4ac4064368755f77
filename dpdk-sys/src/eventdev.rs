//! An event device (`rte_eventdev`): threads enqueue events (here: mbufs) to event queues, and
//! each port dequeues the events of the queues linked to it, the device keeping a flow's
//! events on one port at a time for atomic queues.
//!
//! [`EventDev::create_vdev`] makes a software device (`event_dsw`, `event_sw`) with
//! `rte_vdev_init`, so the EAL's command line needs no `--vdev`; dropping the [`EventDev`]
//! stops, closes and removes it. The set-up calls (`configure`, `setup_queue`, `setup_port`,
//! `link`, `start`) take `&mut self`; [`EventDev::port`] hands out each port once, as an
//! [`EventPort`] that borrows the device, so the device cannot be stopped or dropped while a
//! port is in use.
//!
//! Concurrency: one thread per port at a time (`&mut self` on [`EventPort`], `Send`, not
//! `Sync`); different ports run at once. A device that needs a scheduling service (`event_sw`:
//! [`EventDev::service`]) makes progress only while some thread runs that service
//! ([`Service::run_once`]).
//!
//! Cost: one shim call per burst (`rte_event_enqueue_new_burst`, `rte_event_dequeue_burst`) in
//! front of the driver's own burst function; an event is 16 bytes (attributes and the mbuf
//! pointer), built in place by [`mbuf_event`].

use std::ffi::CString;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{eal, ffi, Error};

/// How an event queue keeps a flow's events (`RTE_SCHED_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedType {
    /// One flow's events go to one port at a time, in order.
    Atomic,
    /// Any event to any linked port.
    Parallel,
}

impl SchedType {
    fn raw(self) -> u8 {
        match self {
            SchedType::Atomic => ffi::RTE_SCHED_TYPE_ATOMIC as u8,
            SchedType::Parallel => ffi::RTE_SCHED_TYPE_PARALLEL as u8,
        }
    }
}

/// What a device can do (`rte_event_dev_info_get`), the parts a set-up needs.
#[derive(Clone, Debug)]
pub struct EventDevInfo {
    /// The driver's name, e.g. `event_dsw`.
    pub driver: String,
    /// Most event queues.
    pub max_queues: u8,
    /// Most ports.
    pub max_ports: u8,
    /// Most flows per queue.
    pub max_queue_flows: u32,
    /// Most events one dequeue returns.
    pub max_dequeue_depth: u8,
    /// Most events one enqueue takes.
    pub max_enqueue_depth: u32,
    /// Most events in the device at once (`-1`: unlimited).
    pub max_events: i32,
    /// Shortest dequeue timeout, in ns.
    pub min_dequeue_timeout_ns: u32,
    /// `RTE_EVENT_DEV_CAP_*` bits.
    pub capabilities: u32,
}

impl EventDevInfo {
    /// Whether the device schedules in the enqueuing and dequeuing threads
    /// (`RTE_EVENT_DEV_CAP_DISTRIBUTED_SCHED`), as `event_dsw` does; otherwise a service
    /// ([`EventDev::service`]) schedules.
    pub fn distributed(&self) -> bool {
        self.capabilities & ffi::RTE_EVENT_DEV_CAP_DISTRIBUTED_SCHED != 0
    }
}

/// The device-wide sizes of [`EventDev::configure`].
#[derive(Clone, Copy, Debug)]
pub struct DeviceConfig {
    /// Event queues.
    pub queues: u8,
    /// Ports.
    pub ports: u8,
    /// Events in the device at once (credits).
    pub events_limit: i32,
    /// Flows per queue.
    pub queue_flows: u32,
    /// Most events a port's dequeue returns.
    pub dequeue_depth: u32,
    /// Most events a port's enqueue takes.
    pub enqueue_depth: u32,
}

/// An event device made by [`EventDev::create_vdev`]; stopped, closed and removed on drop.
#[derive(Debug)]
pub struct EventDev {
    id: u8,
    vdev: CString,
    queues: u8,
    ports: Vec<AtomicBool>,
    started: bool,
    /// The scheduling service of a device that needs one, set running at start.
    service: Option<u32>,
    /// The device needs no `rte_event_maintain` (`RTE_EVENT_DEV_CAP_MAINTENANCE_FREE`).
    maintenance_free: bool,
}

impl EventDev {
    /// Creates the virtual event device `name` (`rte_vdev_init`; e.g. `event_dsw0`, or
    /// `event_sw0` with `args` such as `sched_quanta=64`) and finds its id.
    pub fn create_vdev(name: &str, args: &str) -> Result<EventDev, Error> {
        const OP: &str = "rte_vdev_init";
        eal::ensure(OP)?;
        let cname = CString::new(name)
            .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
        let cargs = CString::new(args)
            .map_err(|_| Error::invalid(OP, format!("arguments {args:?} contain a NUL byte")))?;
        // SAFETY: the EAL is initialised; both strings outlive the call.
        let rc = unsafe { ffi::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
        if rc < 0 {
            return Err(Error::from_code(OP, rc));
        }
        // SAFETY: as above; the name is the device just created.
        let id = unsafe { ffi::rte_event_dev_get_dev_id(cname.as_ptr()) };
        let Ok(id) = u8::try_from(id) else {
            // SAFETY: the vdev was created above and nothing uses it.
            unsafe { ffi::rte_vdev_uninit(cname.as_ptr()) };
            return Err(Error::from_code("rte_event_dev_get_dev_id", id));
        };
        Ok(EventDev {
            id,
            vdev: cname,
            queues: 0,
            ports: Vec::new(),
            started: false,
            service: None,
            maintenance_free: false,
        })
    }

    /// The device's id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// What the device can do.
    pub fn info(&self) -> Result<EventDevInfo, Error> {
        let mut info = ffi::rte_event_dev_info::default();
        // SAFETY: the device exists; info is a plain struct DPDK fills.
        let rc = unsafe { ffi::rte_event_dev_info_get(self.id, &mut info) };
        if rc < 0 {
            return Err(Error::from_code("rte_event_dev_info_get", rc));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: DPDK points at the driver's static, NUL-terminated name.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(EventDevInfo {
            driver,
            max_queues: info.max_event_queues,
            max_ports: info.max_event_ports,
            max_queue_flows: info.max_event_queue_flows,
            max_dequeue_depth: info.max_event_port_dequeue_depth,
            max_enqueue_depth: info.max_event_port_enqueue_depth,
            max_events: info.max_num_events,
            min_dequeue_timeout_ns: info.min_dequeue_timeout_ns,
            capabilities: info.event_dev_cap,
        })
    }

    /// Configures the device (`rte_event_dev_configure`), dequeue timeout the shortest the
    /// device allows. Before [`start`](Self::start).
    pub fn configure(&mut self, config: DeviceConfig) -> Result<(), Error> {
        const OP: &str = "rte_event_dev_configure";
        if self.started {
            return Err(Error::invalid(OP, "the device is started".to_owned()));
        }
        let info = self.info()?;
        let conf = ffi::rte_event_dev_config {
            dequeue_timeout_ns: info.min_dequeue_timeout_ns,
            nb_events_limit: config.events_limit,
            nb_event_queues: config.queues,
            nb_event_ports: config.ports,
            nb_event_queue_flows: config.queue_flows,
            nb_event_port_dequeue_depth: config.dequeue_depth,
            nb_event_port_enqueue_depth: config.enqueue_depth,
            ..Default::default()
        };
        // SAFETY: the device exists and is stopped; conf is fully initialised.
        let rc = unsafe { ffi::rte_event_dev_configure(self.id, &conf) };
        if rc < 0 {
            return Err(Error::from_code(OP, rc));
        }
        self.queues = config.queues;
        self.ports = (0..config.ports).map(|_| AtomicBool::new(false)).collect();
        self.maintenance_free = info.capabilities & ffi::RTE_EVENT_DEV_CAP_MAINTENANCE_FREE != 0;
        Ok(())
    }

    /// Sets up event queue `queue` for `sched` events of up to `flows` flows
    /// (`rte_event_queue_setup`).
    pub fn setup_queue(&mut self, queue: u8, sched: SchedType, flows: u32) -> Result<(), Error> {
        let conf = ffi::rte_event_queue_conf {
            nb_atomic_flows: flows,
            nb_atomic_order_sequences: flows,
            schedule_type: sched.raw(),
            priority: ffi::RTE_EVENT_DEV_PRIORITY_NORMAL as u8,
            ..Default::default()
        };
        // SAFETY: the device exists and is configured (DPDK checks the queue id and state).
        let rc = unsafe { ffi::rte_event_queue_setup(self.id, queue, &conf) };
        if rc < 0 {
            return Err(Error::from_code("rte_event_queue_setup", rc));
        }
        Ok(())
    }

    /// Sets up port `port` (`rte_event_port_setup`): it may hold `new_event_threshold` events
    /// in the device when enqueuing new ones (beyond, new events are refused), and moves up to
    /// `dequeue_depth` / `enqueue_depth` events per call.
    pub fn setup_port(
        &mut self,
        port: u8,
        new_event_threshold: i32,
        dequeue_depth: u16,
        enqueue_depth: u16,
    ) -> Result<(), Error> {
        let conf = ffi::rte_event_port_conf {
            new_event_threshold,
            dequeue_depth,
            enqueue_depth,
            event_port_cfg: 0,
        };
        // SAFETY: the device exists and is configured (DPDK checks the port id and state).
        let rc = unsafe { ffi::rte_event_port_setup(self.id, port, &conf) };
        if rc < 0 {
            return Err(Error::from_code("rte_event_port_setup", rc));
        }
        Ok(())
    }

    /// Links `queues` to `port` (`rte_event_port_link`): the port dequeues their events.
    pub fn link(&mut self, port: u8, queues: &[u8]) -> Result<(), Error> {
        const OP: &str = "rte_event_port_link";
        let n = u16::try_from(queues.len())
            .map_err(|_| Error::invalid(OP, "too many queues".to_owned()))?;
        // SAFETY: the device exists; queues holds n ids; NULL priorities mean normal priority.
        let linked = unsafe {
            ffi::rte_event_port_link(self.id, port, queues.as_ptr(), std::ptr::null(), n)
        };
        if linked != i32::from(n) {
            return Err(Error::last(OP));
        }
        Ok(())
    }

    /// Starts the device (`rte_event_dev_start`). A device that schedules in a service
    /// (`event_sw`) gets that service set to run without a service core, before the start that
    /// requires it: a thread of the caller runs it ([`service`](Self::service)).
    pub fn start(&mut self) -> Result<(), Error> {
        let mut id = 0u32;
        // SAFETY: the device exists; id is written on success.
        let rc = unsafe { ffi::rte_event_dev_service_id_get(self.id, &mut id) };
        if rc == 0 {
            // SAFETY: id names the device's registered service; these set its flags only.
            unsafe {
                let rc = ffi::rte_service_set_runstate_mapped_check(id, 0);
                if rc < 0 {
                    return Err(Error::from_code(
                        "rte_service_set_runstate_mapped_check",
                        rc,
                    ));
                }
                let rc = ffi::rte_service_runstate_set(id, 1);
                if rc < 0 {
                    return Err(Error::from_code("rte_service_runstate_set", rc));
                }
            }
            self.service = Some(id);
        } else if rc != -ESRCH {
            return Err(Error::from_code("rte_event_dev_service_id_get", rc));
        }
        // SAFETY: the device exists and is set up; DPDK checks the rest.
        let rc = unsafe { ffi::rte_event_dev_start(self.id) };
        if rc < 0 {
            return Err(Error::from_code("rte_event_dev_start", rc));
        }
        self.started = true;
        Ok(())
    }

    /// Port `port` of the started device, once: `None` when it is not started, the port does
    /// not exist or was handed out already.
    pub fn port(&self, port: u8) -> Option<EventPort<'_>> {
        let slot = self.ports.get(usize::from(port))?;
        if !self.started || slot.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(EventPort {
            dev: self.id,
            port,
            queues: self.queues,
            maintenance_free: self.maintenance_free,
            _device: PhantomData,
        })
    }

    /// The scheduling service of a started device that needs one (`event_sw`), for a thread of
    /// the caller to run ([`Service::run_once`]); `None` for a device that schedules in its
    /// ports' calls (`event_dsw`) or one not started.
    pub fn service(&self) -> Option<Service<'_>> {
        let id = self.service.filter(|_| self.started)?;
        Some(Service {
            id,
            _device: PhantomData,
        })
    }
}

/// ESRCH (3 on every Linux architecture DPDK supports): what `rte_event_dev_service_id_get`
/// returns for a device without a service.
const ESRCH: i32 = 3;

impl Drop for EventDev {
    fn drop(&mut self) {
        // SAFETY: no EventPort or Service is alive (they borrow self); the device is stopped
        // before it is closed and removed, as DPDK requires. Events still inside it are lost,
        // which the caller avoids by draining every port first.
        unsafe {
            if self.started {
                ffi::rte_event_dev_stop(self.id);
            }
            ffi::rte_event_dev_close(self.id);
            ffi::rte_vdev_uninit(self.vdev.as_ptr());
        }
    }
}

/// A port of a started [`EventDev`], owned by one thread at a time.
#[derive(Debug)]
pub struct EventPort<'a> {
    dev: u8,
    port: u8,
    queues: u8,
    maintenance_free: bool,
    _device: PhantomData<&'a EventDev>,
}

// SAFETY: a port may be used by any thread, one at a time, which &mut self on the only handle
// of the port guarantees; the device outlives it (the borrow).
unsafe impl Send for EventPort<'_> {}

impl EventPort<'_> {
    /// The port's id.
    pub fn id(&self) -> u8 {
        self.port
    }

    /// Enqueues `events`, all with op NEW ([`mbuf_event`] makes such), and returns how many
    /// leading ones the device took (`rte_event_enqueue_new_burst`); the rest (no credits left)
    /// stay the caller's. `None`, enqueuing nothing, when an event names a queue the device
    /// does not have (the driver would index past its queues).
    pub fn enqueue_new(&mut self, events: &[ffi::rte_event]) -> Option<usize> {
        let queues = self.queues;
        // SAFETY: reading the queue id of a plain event.
        if events
            .iter()
            .any(|e| unsafe { e.__bindgen_anon_1.__bindgen_anon_1.queue_id } >= queues)
        {
            return None;
        }
        let n = u16::try_from(events.len()).unwrap_or(u16::MAX);
        // SAFETY: this port is used by this thread alone (&mut self); the device is started
        // (the port exists only then) and outlives the port; every event names an existing
        // queue; DPDK reads n events.
        let taken = unsafe {
            ffi::dpdk_sys_event_enqueue_new_burst(self.dev, self.port, events.as_ptr(), n)
        };
        Some(usize::from(taken))
    }

    /// Dequeues up to `out.len()` events into the front of `out` without waiting
    /// (`rte_event_dequeue_burst`) and returns how many; this releases the events of the
    /// previous dequeue (implicit release).
    pub fn dequeue(&mut self, out: &mut [ffi::rte_event]) -> usize {
        let n = u16::try_from(out.len()).unwrap_or(u16::MAX);
        // SAFETY: as enqueue_new; out has room for n events.
        let got = unsafe {
            ffi::dpdk_sys_event_dequeue_burst(self.dev, self.port, out.as_mut_ptr(), n, 0)
        };
        usize::from(got)
    }

    /// The port's background work when it has not dequeued for a while (`rte_event_maintain`):
    /// `event_dsw` flushes the events it buffered for other ports. Nothing for a device that
    /// declares it needs none (`RTE_EVENT_DEV_CAP_MAINTENANCE_FREE`): DPDK 22.11 does not clear
    /// the maintenance function of a device slot that is released and reused, so a device made
    /// after an `event_dsw` in the same slot would call `event_dsw`'s on its own port.
    pub fn maintain(&mut self) {
        if self.maintenance_free {
            return;
        }
        // SAFETY: as enqueue_new; op 0 is the plain maintenance.
        unsafe { ffi::dpdk_sys_event_maintain(self.dev, self.port, 0) };
    }
}

/// A device's scheduling service, run by the caller's threads (`event_sw`).
#[derive(Debug)]
pub struct Service<'a> {
    id: u32,
    _device: PhantomData<&'a EventDev>,
}

// SAFETY: the service may be run from any thread; run_once serialises concurrent runs itself.
unsafe impl Send for Service<'_> {}

impl Service<'_> {
    /// Runs one iteration of the service on the calling thread
    /// (`rte_service_run_iter_on_app_lcore`, serialised against other runners); false when
    /// DPDK refused (not running, or another thread runs it right now) and when the calling
    /// thread is no EAL lcore: DPDK 22.11 indexes its per-lcore state by the caller's lcore id,
    /// so a thread the EAL did not create must register first ([`eal::register_thread`]).
    pub fn run_once(&mut self) -> bool {
        if eal::lcore_id().is_none() {
            return false;
        }
        // SAFETY: the service exists while the device does (the borrow) and was set to run; the
        // calling thread has an lcore id, which DPDK's per-lcore state is indexed by.
        unsafe { ffi::rte_service_run_iter_on_app_lcore(self.id, 1) == 0 }
    }
}

/// A NEW event carrying `mbuf` to event queue `queue` as flow `flow_id` (20 bits) of scheduling
/// type `sched`, from an ethdev; `sub_type` is the application's (e.g. which port received it:
/// [`event_sub_type`] reads it back).
#[inline]
pub fn mbuf_event(
    queue: u8,
    flow_id: u32,
    sched: SchedType,
    sub_type: u8,
    mbuf: *mut ffi::rte_mbuf,
) -> ffi::rte_event {
    let mut event = ffi::rte_event::default();
    // SAFETY: writing the plain fields of a zeroed event's two unions; the bitfield setters
    // mask their values.
    unsafe {
        let attrs = &mut event.__bindgen_anon_1.__bindgen_anon_1;
        attrs.set_flow_id(flow_id);
        attrs.set_event_type(ffi::RTE_EVENT_TYPE_ETHDEV);
        attrs.set_sub_event_type(u32::from(sub_type));
        attrs.set_op(ffi::RTE_EVENT_OP_NEW as u8);
        attrs.set_sched_type(sched.raw());
        attrs.queue_id = queue;
        attrs.priority = ffi::RTE_EVENT_DEV_PRIORITY_NORMAL as u8;
        event.__bindgen_anon_2.mbuf = mbuf;
    }
    event
}

/// The mbuf a dequeued event carries.
#[inline]
pub fn event_mbuf(event: &ffi::rte_event) -> *mut ffi::rte_mbuf {
    // SAFETY: the events of this crate's users carry mbufs (mbuf_event); reading the pointer
    // member of the union only copies it.
    unsafe { event.__bindgen_anon_2.mbuf }
}

/// The application's sub-type of an event ([`mbuf_event`]'s `sub_type`).
#[inline]
pub fn event_sub_type(event: &ffi::rte_event) -> u8 {
    // SAFETY: reading a bitfield of the event's attribute word, which is plain data.
    unsafe { event.__bindgen_anon_1.__bindgen_anon_1.sub_event_type() as u8 }
}
