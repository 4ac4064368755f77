//! `stack-path`: the receive path of one stack thread, steering and protocol stack, driven by
//! real TCP clients (smoltcp, in memory, one thread), for counting instructions per packet with
//! callgrind. The count is repeatable where a timed run is not, so it shows what a change to the
//! per-packet path costs or saves:
//!
//! ```text
//! cargo build --release -p flowsteer-bench --bin stack-path
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*server_round*' \
//!     target/release/stack-path --connections 64 --exchanges 20
//! ```
//!
//! Instructions per packet = callgrind's total `Ir` / the `frames_in` this prints. Only
//! `server_round` is measured: the steering step (classification, bulk lookup) and the stack's
//! round (ownership count, segment screen, smoltcp, the tcp-echo app), not the clients.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;

use flowsteer_config::{App, AppKind, Config, MissPolicy, Profile};
use flowsteer_mpsc::Producer;
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::rss::Reta;
use flowsteer_testrig::memory::{ClientDevice, Wire};
use flowtable::FlowTable;
use forwarder::processor::{Processor, StackProcessor};
use forwarder::stats::{EngineStats, ThreadStats};
use forwarder::steer::Steering;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const ECHO_PORT: u16 = 7;
const MESSAGE: [u8; 64] = [0x5a; 64];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (connections, exchanges) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("stack-path: {e}\nusage: stack-path [--connections N] [--exchanges M]");
            return ExitCode::from(2);
        }
    };
    match run(connections, exchanges) {
        Ok(counts) => {
            println!(
                "connections {connections}, exchanges {exchanges}: frames_in {} frames_out {} \
                 echoed_bytes {}",
                counts.frames_in, counts.frames_out, counts.echoed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stack-path: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<(usize, usize), String> {
    let (mut connections, mut exchanges) = (64, 20);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{arg}: missing value"))?;
        let n: usize = value
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| format!("{arg}: an integer 1..=1000, got {value:?}"))?;
        match arg.as_str() {
            "--connections" => connections = n,
            "--exchanges" => exchanges = n,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok((connections, exchanges))
}

struct Counts {
    frames_in: u64,
    frames_out: u64,
    echoed: usize,
}

/// The server thread's half: what one engine thread runs per loop iteration.
struct Server {
    steering: Steering,
    processor: StackProcessor,
    table: Arc<dyn FlowTable>,
    queues: Vec<Producer<PktBuf>>,
    stats: EngineStats,
}

/// One loop iteration of the server thread, the only function callgrind measures.
#[inline(never)]
fn server_round(
    server: &mut Server,
    rx: &mut Vec<PktBuf>,
    local: &mut Vec<PktBuf>,
    tx: &mut Vec<PktBuf>,
    cache: &mut PoolCache,
) {
    let stats: &ThreadStats = server.stats.thread(0);
    let table = &*server.table;
    server
        .steering
        .steer(rx, local, table, &server.queues, cache, stats);
    server
        .processor
        .process(&mut Vec::new(), local, tx, cache, stats);
}

fn run(connections: usize, exchanges: usize) -> Result<Counts, String> {
    let mut config = Config::default();
    config.engine.threads = 1;
    config.port.queues = 1;
    config.traffic.profile = Profile::None;
    config.metrics.enabled = false;
    config.stack.max_connections = connections as u32 + 8;
    config.stack.app = vec![App::new(AppKind::TcpEcho, ECHO_PORT)];
    config.validate().map_err(|e| e.to_string())?;
    let port = forwarder::ports::open_uveth(&config).map_err(|e| e.to_string())?;
    let table = forwarder::engine::flow_table(&config);
    let stack_config = forwarder::stacks::stack_config(&config, 0, &*port);
    let server_ip = config.port.ipv4;
    let apps = stack_config.apps.clone();
    let stack_stats = Arc::new(crossbeam_utils::CachePadded::new(
        flowsteer_stack::StackStats::new(&apps),
    ));
    let stack = flowsteer_stack::Stack::new(stack_config, 0, table.clone(), stack_stats)
        .map_err(|e| e.to_string())?;
    let burst = usize::from(config.engine.burst);
    let tx_limit = 2 * burst.max(32);
    let (producer, _consumer) = flowsteer_mpsc::ring(1024).map_err(|e| e.to_string())?;
    let mut server = Server {
        steering: Steering::new(0, 1, burst, MissPolicy::Local, Reta::new(64, 1).unwrap()),
        processor: StackProcessor::new(Box::new(stack), tx_limit),
        table,
        queues: vec![producer],
        stats: EngineStats::new(1),
    };
    let pool = flowsteer_nic::pool::PacketPool::new(config.pool.buffers, config.pool.data_room)
        .map_err(|e| e.to_string())?;
    let mut cache = pool.cache(config.pool.cache);

    let mut wire = Wire::default();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
    iface_config.random_seed = 7;
    let epoch = std::time::Instant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as i64);
    let mut client = Interface::new(iface_config, &mut ClientDevice(&mut wire), now());
    client.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24))
            .expect("one address");
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut clients: Vec<(SocketHandle, usize, usize)> = Vec::with_capacity(connections);
    for c in 0..connections {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        socket
            .connect(
                client.context(),
                (IpAddress::Ipv4(server_ip), ECHO_PORT),
                40000 + c as u16,
            )
            .map_err(|e| format!("connect: {e}"))?;
        clients.push((sockets.add(socket), 0, 0));
    }

    let (mut rx, mut local, mut tx) = (Vec::new(), Vec::new(), Vec::new());
    let mut counts = Counts {
        frames_in: 0,
        frames_out: 0,
        echoed: 0,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        client.poll(now(), &mut ClientDevice(&mut wire), &mut sockets);
        // Each connection sends its next message once the previous one came back, and closes
        // after its last.
        let mut done = 0;
        for (handle, sent, received) in clients.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            while socket.can_recv() {
                let n = socket
                    .recv(|data| (data.len(), data.len()))
                    .map_err(|e| format!("recv: {e}"))?;
                *received += n;
            }
            if socket.may_send() && *sent == *received && *sent < exchanges * MESSAGE.len() {
                *sent += socket
                    .send_slice(&MESSAGE)
                    .map_err(|e| format!("send: {e}"))?;
            }
            if *received == exchanges * MESSAGE.len() {
                socket.close();
                if !socket.is_open() || socket.state() == tcp::State::TimeWait {
                    done += 1;
                }
            }
        }
        client.poll(now(), &mut ClientDevice(&mut wire), &mut sockets);
        while let Some(frame) = wire.to_server.pop_front() {
            let mut buf = cache.alloc().ok_or("pool exhausted")?;
            buf.write_frame(&frame).map_err(|e| e.to_string())?;
            rx.push(buf);
        }
        counts.frames_in += rx.len() as u64;
        server_round(&mut server, &mut rx, &mut local, &mut tx, &mut cache);
        counts.frames_out += tx.len() as u64;
        for buf in tx.drain(..) {
            wire.to_client.push_back(buf.data().to_vec());
            cache.free(buf);
        }
        if done == connections && wire.to_server.is_empty() && wire.to_client.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "not done after 600 s: {done} of {connections} connections"
            ));
        }
    }
    counts.echoed = clients.iter().map(|(_, _, received)| received).sum();
    Ok(counts)
}
