//! A port backend the engine was not written for: a small in-memory port implements
//! `flowsteer_nic::port::Port`, and the engine runs on it through `Engine::start_on` with no
//! change to the engine or its thread loop. Frames go in on one queue, are steered to the thread
//! that serves their port, answered by its stack and sent on that thread's queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Profile};
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::{Port, PortControl, QueuePair};
use flowsteer_nic::wire::{
    build_frame, classify, layout_of, Classified, FiveTuple, FrameSpec, IpPair, ARP_REPLY,
    IP_PROTO_UDP,
};
use forwarder::engine::{flow_table, Engine};

const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const CLIENT_IP: [u8; 4] = [198, 18, 0, 10];
const PORT_IP: [u8; 4] = [198, 18, 0, 1];

/// Per queue, frames waiting to be received; frames sent, with their queue.
struct Wire {
    rx: Vec<Mutex<VecDeque<Vec<u8>>>>,
    tx: Mutex<Vec<(u16, Vec<u8>)>>,
    taken: Vec<AtomicBool>,
    rx_no_buffer: Vec<AtomicU64>,
}

/// The test's port: queues over in-memory frame lists.
struct MemoryPort(Arc<Wire>);

impl MemoryPort {
    fn new(queues: u16) -> Self {
        MemoryPort(Arc::new(Wire {
            rx: (0..queues).map(|_| Mutex::default()).collect(),
            tx: Mutex::default(),
            taken: (0..queues).map(|_| AtomicBool::new(false)).collect(),
            rx_no_buffer: (0..queues).map(|_| AtomicU64::new(0)).collect(),
        }))
    }

    fn arrive(&self, queue: u16, frame: Vec<u8>) {
        self.0.rx[usize::from(queue)]
            .lock()
            .unwrap()
            .push_back(frame);
    }

    fn sent(&self) -> Vec<(u16, Vec<u8>)> {
        self.0.tx.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct QueueTaken(u16);

impl fmt::Display for QueueTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {} is taken or out of range", self.0)
    }
}

impl std::error::Error for QueueTaken {}

impl PortControl for MemoryPort {
    fn queues(&self) -> u16 {
        self.0.rx.len() as u16
    }

    fn mac(&self) -> [u8; 6] {
        PORT_MAC
    }

    fn describe(&self) -> String {
        format!("memory port, {} queues", self.queues())
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        let wire = &self.0;
        wire.rx_no_buffer
            .iter()
            .map(|n| vec![("rx_no_buffer", n.load(Ordering::Relaxed))])
            .collect()
    }
}

impl Port for MemoryPort {
    type Queue = MemoryQueue;
    type Error = QueueTaken;

    fn take_queue(&self, queue: u16) -> Result<MemoryQueue, QueueTaken> {
        match self.0.taken.get(usize::from(queue)) {
            Some(taken) if !taken.swap(true, Ordering::AcqRel) => Ok(MemoryQueue {
                wire: self.0.clone(),
                queue,
            }),
            _ => Err(QueueTaken(queue)),
        }
    }
}

struct MemoryQueue {
    wire: Arc<Wire>,
    queue: u16,
}

impl QueuePair for MemoryQueue {
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let mut frames = self.wire.rx[usize::from(self.queue)].lock().unwrap();
        let mut received = 0;
        while received < max {
            let Some(frame) = frames.pop_front() else {
                break;
            };
            let Some(mut buf) = cache.alloc() else {
                self.wire.rx_no_buffer[usize::from(self.queue)].fetch_add(1, Ordering::Relaxed);
                continue;
            };
            buf.write_frame(&frame).expect("test frames fit a buffer");
            out.push(buf);
            received += 1;
        }
        received
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let mut sent = self.wire.tx.lock().unwrap();
        let n = pkts.len();
        for pkt in pkts.drain(..) {
            sent.push((self.queue, pkt.data().to_vec()));
            cache.free(pkt);
        }
        n
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }
}

fn arp_request_for_the_port() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, hlen 6, plen 4, request; sender MAC and IP, target MAC (unknown) and IP.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&CLIENT_MAC);
    f[28..32].copy_from_slice(&CLIENT_IP);
    f[38..42].copy_from_slice(&PORT_IP);
    f
}

fn datagram(payload: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_mac: CLIENT_MAC,
        dst_mac: PORT_MAC,
        vlan: None,
        tuple: FiveTuple {
            ip: IpPair::V4 {
                src: CLIENT_IP,
                dst: PORT_IP,
            },
            proto: IP_PROTO_UDP,
            src_port: 40000,
            dst_port: 7,
        },
        tcp_flags: 0,
        payload,
    };
    let mut buf = vec![0u8; layout_of(&spec).frame_len()];
    let len = build_frame(&mut buf, &spec).unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn the_engine_runs_on_a_port_it_was_not_written_for() {
    let mut config = Config::default();
    config.engine.threads = 2;
    config.port.queues = 2;
    config.port.mac.0 = PORT_MAC;
    config.engine.balance = Balance::Software;
    config.metrics.enabled = false;
    config.traffic.profile = Profile::None;
    // Only thread 1 serves the port: what arrives on queue 0 must be handed to it.
    config.stack.app = vec![App::new(AppKind::UdpEcho, 7).on_threads([1])];
    let port = Arc::new(MemoryPort::new(2));
    let engine =
        Engine::start_on(&config, port.clone(), flow_table(&config), false).expect("starts");

    port.arrive(0, arp_request_for_the_port());
    port.arrive(0, datagram(b"through another thread"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let echoed = |sent: &[(u16, Vec<u8>)]| {
        sent.iter()
            .find_map(|(queue, frame)| match classify(frame) {
                Ok(Classified::Flow { tuple, .. }) if tuple.src_port == 7 => {
                    Some((*queue, tuple, frame.ends_with(b"through another thread")))
                }
                _ => None,
            })
    };
    while echoed(&port.sent()).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = port.sent();
    let report = engine.stop().expect("stops");

    let (queue, tuple, same_payload) = echoed(&sent).expect("the datagram is echoed");
    assert_eq!(queue, 1, "the echo leaves on the serving thread's queue");
    assert_eq!(tuple.dst_port, 40000);
    assert_eq!(
        tuple.ip,
        IpPair::V4 {
            src: PORT_IP,
            dst: CLIENT_IP
        }
    );
    assert!(same_payload);
    assert!(
        sent.iter().any(|(queue, frame)| *queue == 0
            && classify(frame) == Ok(Classified::Arp { op: ARP_REPLY })),
        "the thread that received the ARP request answers it: {sent:?}"
    );
    assert!(report.conservation.ok, "{:?}", report.conservation.failures);
    // The datagram, and the ARP request's learning copy for thread 1's neighbour cache.
    assert_eq!(report.per_thread[0].link_copies, 1);
    assert_eq!(report.per_thread[0].handed_off[1], 2);
    // Steering classified the request and the datagram, and their stacks reused that; the
    // learning copy was written after it and is parsed again.
    assert_eq!(report.per_thread[0].parse_reused, 1);
    assert_eq!(report.per_thread[1].parse_reused, 1);
    assert_eq!(report.pool.available, report.pool.capacity);
}

#[test]
fn a_port_with_fewer_queues_than_configured_is_a_setup_error() {
    let mut config = Config::default();
    config.engine.threads = 2;
    config.port.queues = 2;
    config.metrics.enabled = false;
    config.traffic.profile = Profile::None;
    let port = Arc::new(MemoryPort::new(1));
    let error = Engine::start_on(&config, port, flow_table(&config), false)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("has 1 queue, port.queues is 2"), "{error}");
}

#[test]
fn the_generator_does_not_run_on_a_port_of_the_callers() {
    let mut config = Config::default();
    config.metrics.enabled = false;
    let error = Engine::start_on(
        &config,
        Arc::new(MemoryPort::new(1)),
        flow_table(&config),
        false,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        error.contains("the generator feeds only the ports Engine::start builds for it"),
        "{error}"
    );
}
