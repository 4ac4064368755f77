//! The failure manager (`engine.on_failure`) against the Linux kernel's TCP clients: the engine
//! on one end of a veth pair through AF_PACKET, long-lived kernel connections from a network
//! namespace open on both stack threads, and thread 1 made to panic in the middle of its loop
//! (`Health::inject_panic`, the test aid behind `[fault]`).
//!
//! ```text
//!   namespace fskc…                        root namespace
//!   198.18.0.2, kernel TCP ══ veth ══ AF_PACKET, fanout "hash", 2 queues, 2 stack threads
//!                                     tcp-echo on 7100 on both threads, on 7101 on thread 1 only
//! ```
//!
//! Each run opens connections to both ports and exchanges a first part on each, byte-exact. The
//! owner of a connection is the thread whose stack accepted it, which adds the connection's
//! exact rule to the flow table under either balance mode: the test reads it there (with
//! `balance = "rss"` the kernel's fanout hash chose the thread, with `"software"` the hash and
//! the listen rules did), and checks it against each stack's active-connection gauge. Then
//! thread 1 panics, and the test checks the issue's targets:
//!
//! - the reclaim (`Reclaim::total`, from the caught panic to its NIC queue's new server) takes
//!   less than 100 ms, and at the end the pool is full and conservation holds;
//! - every connection thread 0 owns completes its second part byte-exact and closes without a
//!   reset; thread 1's connections never complete: under `restart` each is reset (by the fresh
//!   stack or by thread 0), under `redistribute` each whose frames thread 0 now takes from
//!   queue 1 is reset by it, which shows the queue adopted;
//! - `restart`: a new connection to 7101, which only thread 1 serves, echoes byte-exact within
//!   1 s of the injection; `redistribute`: new connections to 7100 succeed, thread 1 stays down
//!   and thread 0 polls its queue; `stop`: the engine stops with an error naming thread 1 and
//!   the panic, with every buffer back and every packet counted all the same.
//!
//! It prints the reclaim's time and the time to the first new connection. A new connection's
//! client retries with a new socket when its SYN is not answered within 25 ms, rather than
//! after the kernel's first retransmission (1 s): a SYN sent while thread 1 is down can be
//! lost, and the 1 s target is about the engine, not the client's back-off. With `rss` a
//! connection to 7101 whose flow the fanout hash deals to queue 0 is refused (thread 0 does not
//! serve 7101, and RSS cannot hand it over): those clients retry too, failure or not.
//!
//! The tests need root (namespaces, veth, AF_PACKET), `ip` and `ethtool`; without them they print
//! what they need and pass, unless `CI=true`, where they fail.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Driver, Fanout, Idle, OnFailure};
use flowtable::{FlowKey, Lookup, Proto, ThreadId};
use forwarder::engine::Engine;
use forwarder::health::{Cause, Reclaim, Step, ThreadHealth, ThreadState};
use forwarder::reclaim::describe;
use forwarder::report::RunReport;

mod common;
use common::*;

/// The addresses the connections of a run use: IPv4 or IPv6.
#[derive(Clone, Copy, Debug)]
struct Family {
    engine: IpAddr,
    client: IpAddr,
}

const V4: Family = Family {
    engine: IpAddr::V4(ENGINE_IP),
    client: IpAddr::V4(CLIENT_IP),
};
const V6: Family = Family {
    engine: IpAddr::V6(ENGINE_IP6),
    client: IpAddr::V6(CLIENT_IP6),
};

impl Family {
    /// The flow key of the client's connection from `client_port` to the engine's `port`.
    fn key(self, port: u16, client_port: u16) -> FlowKey {
        match (self.engine, self.client) {
            (IpAddr::V4(engine), IpAddr::V4(client)) => {
                FlowKey::v4(Proto::Tcp, engine, port, client, client_port)
            }
            (IpAddr::V6(engine), IpAddr::V6(client)) => {
                FlowKey::v6(Proto::Tcp, engine, port, client, client_port)
            }
            _ => unreachable!("one family per run"),
        }
    }
}

/// tcp-echo on both threads.
const SHARED_PORT: u16 = 7100;
/// tcp-echo on thread 1 only.
const THREAD1_PORT: u16 = 7101;
const SURVIVOR: usize = 0;
const FAILING: usize = 1;
const SHARED_CONNECTIONS: u32 = 24;
const THREAD1_CONNECTIONS: u32 = 4;
/// Bytes of each part a long-lived connection exchanges, before and after the failure.
const PART: usize = 6000;
const RECLAIM_TARGET: Duration = Duration::from_millis(100);
const NEW_CONNECTION_TARGET: Duration = Duration::from_secs(1);
/// Each step (connect, write, read) of a client the engine is expected to serve.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// One connect attempt of a new connection around the failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(25);
/// How long a new-connection client keeps trying, so that a miss of the target still prints
/// the time it took.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The engine

/// Held by each test while it runs: the reclaim's time and the time to a new connection are
/// measurements, and on a machine of few cores the other tests' engines and clients would be
/// in them.
fn measured_alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves nothing behind that the next one needs.
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(interface: &str, balance: Balance, idle: Idle, on_failure: OnFailure) -> Config {
    let mut cfg = two_threads_serving(vec![
        App::new(AppKind::TcpEcho, SHARED_PORT),
        App::new(AppKind::TcpEcho, THREAD1_PORT).on_threads([FAILING as u16]),
    ]);
    cfg.engine.balance = balance;
    cfg.engine.idle = idle;
    cfg.engine.on_failure = on_failure;
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = interface.to_owned();
    // As a NIC's RSS: every frame of a connection reaches one queue, which the kernel chooses.
    cfg.port.fanout = Fanout::Hash;
    cfg
}

// ---------------------------------------------------------------------------------------------
// The kernel's connections

/// How a client's exchange ended.
enum Outcome {
    /// Echoed byte-exact, then closed by the server after the client's half-close.
    Completed,
    /// The server answered bytes that were not the client's.
    Wrong(String),
    /// Reset by the server (ECONNRESET, or EPIPE after one).
    Reset(String),
    /// Anything else: a time-out, a close before the echo.
    Failed(String),
}

impl Outcome {
    fn of(step: &str, e: std::io::Error) -> Outcome {
        let text = format!("{step}: {e}");
        match e.kind() {
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                Outcome::Reset(text)
            }
            _ => Outcome::Failed(text),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => write!(f, "completed"),
            Outcome::Wrong(how) => write!(f, "wrong: {how}"),
            Outcome::Reset(how) => write!(f, "reset: {how}"),
            Outcome::Failed(how) => write!(f, "failed: {how}"),
        }
    }
}

/// Sends `part` and reads its echo back.
fn echo_part(stream: &mut TcpStream, part: &[u8]) -> Result<(), Outcome> {
    stream
        .write_all(part)
        .map_err(|e| Outcome::of("write", e))?;
    let mut echoed = vec![0u8; part.len()];
    stream
        .read_exact(&mut echoed)
        .map_err(|e| Outcome::of("read the echo", e))?;
    match part.iter().zip(&echoed).position(|(a, b)| a != b) {
        Some(at) => Err(Outcome::Wrong(format!(
            "echoed byte {at} of {} differs",
            part.len()
        ))),
        None => Ok(()),
    }
}

/// Sends the last `part`, reads its echo, half-closes and expects the server to close after
/// it with nothing more.
fn echo_and_close(stream: &mut TcpStream, part: &[u8]) -> Outcome {
    if let Err(outcome) = echo_part(stream, part) {
        return outcome;
    }
    if let Err(e) = stream.shutdown(Shutdown::Write) {
        return Outcome::of("shutdown", e);
    }
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Outcome::Completed,
        Ok(_) => Outcome::Wrong(format!("{} bytes after the echo", rest.len())),
        Err(e) => Outcome::of("wait for the server's close", e),
    }
}

fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STEP_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true))
        .expect("socket options");
    stream
}

/// A kernel connection kept open across the failure.
struct Held {
    stream: TcpStream,
    port: u16,
    /// Both parts: the first is exchanged before the failure, the second after.
    data: Vec<u8>,
    owner: ThreadId,
}

/// Connects from the namespace, `plan` giving each connection's (server port, pattern seed).
/// With `rss`, a connection to [`THREAD1_PORT`] the kernel deals to queue 0 is refused: it is
/// tried again from a new source port. Returns the streams (a socket stays in the namespace it
/// was made in, whatever thread uses it) and the refusals.
fn connect_all(
    net: &ClientNet,
    family: Family,
    plan: Vec<(u16, u32)>,
    balance: Balance,
) -> (Vec<(TcpStream, u16, u32)>, u32) {
    net.client(move || {
        let mut refused = 0;
        let streams = plan
            .into_iter()
            .map(|(port, seed)| {
                let addr = SocketAddr::from((family.engine, port));
                loop {
                    match TcpStream::connect_timeout(&addr, STEP_TIMEOUT) {
                        Ok(stream) => return (with_timeouts(stream), port, seed),
                        Err(e)
                            if e.kind() == ErrorKind::ConnectionRefused
                                && balance == Balance::Rss
                                && port == THREAD1_PORT
                                && refused < 64 =>
                        {
                            refused += 1
                        }
                        Err(e) => panic!("connect {addr}: {e}"),
                    }
                }
            })
            .collect();
        (streams, refused)
    })
    .join()
    .expect("the connecting client thread")
}

/// The thread whose exact rule owns the kernel's connection `stream` to `port`.
fn owner_of(engine: &Engine, family: Family, stream: &TcpStream, port: u16) -> ThreadId {
    let client_port = stream.local_addr().expect("local address").port();
    let key = family.key(port, client_port);
    match engine.shared().table.lookup(&key) {
        Lookup::Exact(owner) => owner,
        other => panic!("connection {client_port} → {port}: {other:?}, not an exact rule"),
    }
}

/// Open connections per thread, as each stack's gauges count them.
fn active_per_thread(engine: &Engine) -> Vec<u64> {
    engine
        .shared()
        .stacks
        .iter()
        .map(|s| {
            s.stats
                .apps
                .iter()
                .map(|a| a.connections_active.get())
                .sum()
        })
        .collect()
}

/// Step 1: [`SHARED_CONNECTIONS`] connections to 7100 and [`THREAD1_CONNECTIONS`] to 7101,
/// each exchanging its first part byte-exact, each with its owner; both threads own some.
fn open_on_both_threads(
    net: &ClientNet,
    engine: &Engine,
    family: Family,
    balance: Balance,
) -> Vec<Held> {
    let plan: Vec<(u16, u32)> = (0..SHARED_CONNECTIONS)
        .map(|i| (SHARED_PORT, i))
        .chain((0..THREAD1_CONNECTIONS).map(|i| (THREAD1_PORT, 1000 + i)))
        .collect();
    let (streams, refused) = connect_all(net, family, plan, balance);
    let mut held: Vec<Held> = streams
        .into_iter()
        .map(|(mut stream, port, seed)| {
            let data = pattern(2 * PART, seed);
            if let Err(outcome) = echo_part(&mut stream, &data[..PART]) {
                panic!("first part on a connection to {port}: {outcome}");
            }
            Held {
                owner: owner_of(engine, family, &stream, port),
                stream,
                port,
                data,
            }
        })
        .collect();
    held.sort_by_key(|h| h.owner);
    let owned: Vec<u64> = [SURVIVOR, FAILING]
        .iter()
        .map(|&t| held.iter().filter(|h| usize::from(h.owner) == t).count() as u64)
        .collect();
    assert!(
        held.iter()
            .all(|h| h.port != THREAD1_PORT || usize::from(h.owner) == FAILING),
        "a connection to {THREAD1_PORT} owned by another thread than {FAILING}"
    );
    assert!(
        owned.iter().all(|&n| n > 0),
        "connections per thread {owned:?}: the scenario needs both"
    );
    // The stacks count the same connections: the exact rules name the sockets' threads.
    let deadline = Instant::now() + Duration::from_secs(1);
    while active_per_thread(engine) != owned && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        active_per_thread(engine),
        owned,
        "active connections per stack against the flow table's owners"
    );
    eprintln!(
        "{balance}: {} connections open, per thread {owned:?} ({refused} refused by thread 0 \
         and tried again)",
        held.len()
    );
    held
}

/// Starts trying new connections to `port` from the namespace at once: each attempt a new
/// socket with [`ATTEMPT_TIMEOUT`] to connect, then an echo of 1 KiB and a close. Returns the
/// time from `since` to the first that completed, and the attempts.
fn first_new_connection(
    net: &ClientNet,
    engine_ip: IpAddr,
    port: u16,
    since: Instant,
) -> thread::JoinHandle<Result<(Duration, u32), String>> {
    net.client(move || {
        let addr = SocketAddr::from((engine_ip, port));
        let mut attempts = 0;
        let mut last = String::new();
        while since.elapsed() < ATTEMPT_LIMIT {
            attempts += 1;
            match TcpStream::connect_timeout(&addr, ATTEMPT_TIMEOUT) {
                Ok(stream) => {
                    let mut stream = with_timeouts(stream);
                    match echo_and_close(&mut stream, &pattern(1024, 5000 + attempts)) {
                        Outcome::Completed => return Ok((since.elapsed(), attempts)),
                        other => last = other.to_string(),
                    }
                }
                Err(e) => last = format!("connect: {e}"),
            }
            // A refusal comes back at once: no storm of sockets while the thread is down.
            thread::sleep(Duration::from_millis(2));
        }
        Err(format!(
            "no new connection to {port} in {ATTEMPT_LIMIT:?} ({attempts} attempts, last: \
             {last})"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// The failure

/// Waits until thread 1's reclaim has ended in `settled` and its last step is timed; returns
/// the reclaim.
fn wait_for_reclaim(engine: &Engine, settled: impl Fn(&ThreadHealth) -> bool) -> Reclaim {
    let health = engine.shared().health.thread(FAILING);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reclaim = health.last_reclaim();
        if let Some(r) =
            reclaim.filter(|r| settled(health) && !r.steps[Step::Queue as usize].is_zero())
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "thread {FAILING} not reclaimed after 2 s: {:?}, {:?}",
            health.state(),
            health.last_reclaim()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Checks a reclaim of thread 1 after its panic with `held` open, and prints it.
fn check_reclaim(engine: &Engine, r: &Reclaim, held: &[Held], label: &str) {
    let health = &engine.shared().health;
    let on_failing = held
        .iter()
        .filter(|h| usize::from(h.owner) == FAILING)
        .count();
    eprintln!(
        "{label}: thread {FAILING} {}",
        describe(r, health.thread(FAILING).state())
    );
    eprintln!("{label}: reclaim {:.3} ms", r.total().as_secs_f64() * 1e3);
    assert!(
        r.total() < RECLAIM_TARGET,
        "reclaim took {:?} (target {RECLAIM_TARGET:?}): {r:?}",
        r.total()
    );
    assert!(r.reason.contains("panic"), "{r:?}");
    assert_eq!(health.thread(FAILING).failures(Cause::Panic), 1);
    assert_eq!(health.thread(FAILING).failures(Cause::Stall), 0);
    assert_eq!(health.thread(SURVIVOR).failures_total(), 0);
    assert_eq!(health.thread(SURVIVOR).state(), ThreadState::Running);
    // Its connections went with it, and their rules.
    assert!(
        r.connections >= on_failing as u64,
        "{on_failing} open: {r:?}"
    );
    assert!(r.rules_deleted >= on_failing, "{on_failing} open: {r:?}");
    // 7100 is served by thread 0 too: withdrawn; 7101 only by thread 1: kept.
    assert_eq!((r.listens_withdrawn, r.listens_kept), (1, 1), "{r:?}");
}

/// Step 3: the second part on every held connection at once; thread 0's complete byte-exact
/// and close without a reset, thread 1's never complete: those to a port `must_reset` names
/// are reset, the others reset or time out.
fn finish_held(held: Vec<Held>, must_reset: impl Fn(u16) -> bool, label: &str) {
    let outcomes: Vec<(ThreadId, u16, Outcome)> = thread::scope(|scope| {
        let finishing: Vec<_> = held
            .into_iter()
            .map(|mut h| {
                scope.spawn(move || {
                    let outcome = echo_and_close(&mut h.stream, &h.data[PART..]);
                    (h.owner, h.port, outcome)
                })
            })
            .collect();
        finishing
            .into_iter()
            .map(|f| f.join().expect("a finishing client"))
            .collect()
    });
    let (survivors, failed): (Vec<_>, Vec<_>) = outcomes
        .iter()
        .partition(|(owner, _, _)| usize::from(*owner) == SURVIVOR);
    let listed = |of: &[&(ThreadId, u16, Outcome)], pick: &dyn Fn(u16, &Outcome) -> bool| {
        of.iter()
            .filter(|(_, port, outcome)| pick(*port, outcome))
            .map(|(_, port, outcome)| format!("to {port}: {outcome}"))
            .collect::<Vec<_>>()
    };
    let not_completed = listed(&survivors, &|_, o| !matches!(o, Outcome::Completed));
    assert!(
        not_completed.is_empty(),
        "{label}: thread {SURVIVOR}'s connections that did not complete: {not_completed:#?}"
    );
    let unexpected = listed(&failed, &|port, o| match o {
        Outcome::Reset(_) => false,
        Outcome::Failed(_) => must_reset(port),
        Outcome::Completed | Outcome::Wrong(_) => true,
    });
    assert!(
        unexpected.is_empty(),
        "{label}: thread {FAILING}'s connections after its failure: {unexpected:#?}"
    );
    let reset = listed(&failed, &|_, o| matches!(o, Outcome::Reset(_))).len();
    eprintln!(
        "{label}: {} of thread {SURVIVOR}'s connections completed byte-exact; of thread \
         {FAILING}'s {}, {reset} reset, {} timed out",
        survivors.len(),
        failed.len(),
        failed.len() - reset
    );
}

/// Injects the panic into thread 1 and starts a new-connection client on `probe_port` at the
/// same moment.
fn inject_panic(
    net: &ClientNet,
    engine: &Engine,
    held: &[Held],
    probe: (IpAddr, u16),
) -> thread::JoinHandle<Result<(Duration, u32), String>> {
    let injected = Instant::now();
    fail_thread_1(engine, held);
    first_new_connection(net, probe.0, probe.1, injected)
}

/// Makes thread 1 panic: an injected fault is taken with packets in hand, so one byte goes out
/// on a connection of thread 1 (which is to be reset anyway) to bring it some.
fn fail_thread_1(engine: &Engine, held: &[Held]) {
    engine.shared().health.inject_panic(FAILING);
    let ours = held
        .iter()
        .find(|h| usize::from(h.owner) == FAILING)
        .expect("thread 1 holds connections");
    (&ours.stream)
        .write_all(b"!")
        .expect("a byte on thread 1's connection");
}

/// The time to the first new connection, printed and held to the target.
fn check_first_connection(
    probe: thread::JoinHandle<Result<(Duration, u32), String>>,
    port: u16,
    label: &str,
) {
    let (took, attempts) = probe
        .join()
        .expect("the new-connection client")
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    eprintln!(
        "{label}: first new connection to {port} echoed {:.1} ms after the injection ({attempts} \
         attempts)",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < NEW_CONNECTION_TARGET,
        "first new connection to {port} after {took:?} (target {NEW_CONNECTION_TARGET:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// The scenarios

/// `restart`: thread 1 panics with connections open on both threads; a fresh stack serves its
/// queue again.
fn restart(family: Family, balance: Balance, idle: Idle) {
    let ip = if family.engine.is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    };
    let label = format!("{ip}/{balance}/{idle}/restart");
    let _alone = measured_alone();
    let net = ClientNet::new();
    let engine = Engine::start(
        &config(&net.engine_if, balance, idle, OnFailure::Restart),
        false,
    )
    .expect("the engine starts on the veth");
    let held = open_on_both_threads(&net, &engine, family, balance);

    let probe = inject_panic(&net, &engine, &held, (family.engine, THREAD1_PORT));
    let r = wait_for_reclaim(&engine, |h| {
        h.restarts() == 1 && h.state() == ThreadState::Running
    });
    check_reclaim(&engine, &r, &held, &label);
    assert_eq!(r.adopted_by, None);
    finish_held(held, |_| true, &label);
    check_first_connection(probe, THREAD1_PORT, &label);

    // Both ports serve new connections as before: 7100 on both threads again.
    let failed = concurrent_echo(&net, family.engine, 16, STEP_TIMEOUT, |i| {
        (SHARED_PORT, 4096 + i as usize * 37, 2000 + i)
    });
    assert!(
        failed.is_empty(),
        "{label}: new connections to {SHARED_PORT}: {failed:#?}"
    );
    if balance == Balance::Software {
        // Under RSS the kernel deals some to thread 0, which refuses them: the probe showed
        // that those it deals to thread 1 are served.
        let failed = concurrent_echo(&net, family.engine, 4, STEP_TIMEOUT, |i| {
            (THREAD1_PORT, 4096 + i as usize * 37, 3000 + i)
        });
        assert!(
            failed.is_empty(),
            "{label}: new connections to {THREAD1_PORT}: {failed:#?}"
        );
    }

    let report = stop_and_check(engine);
    assert_eq!(report.failures.len(), 1, "{}", report.render_table());
    let failure = &report.failures[0];
    assert_eq!(
        (failure.thread, failure.state, failure.restarts),
        (FAILING, "running", 1),
        "{failure}"
    );
    eprintln!("{label}: {failure}");
}

/// `redistribute`: thread 1 panics and stays down; thread 0 polls its queue beside its own.
fn redistribute(balance: Balance, idle: Idle) {
    let label = format!("{balance}/{idle}/redistribute");
    let _alone = measured_alone();
    let net = ClientNet::new();
    let engine = Engine::start(
        &config(&net.engine_if, balance, idle, OnFailure::Redistribute),
        false,
    )
    .expect("the engine starts on the veth");
    let held = open_on_both_threads(&net, &engine, V4, balance);

    // The kernel may deal the probe's flow to either queue: thread 0 serves it on both.
    let probe = inject_panic(&net, &engine, &held, (V4.engine, SHARED_PORT));
    let r = wait_for_reclaim(&engine, |h| h.state() == ThreadState::Down);
    check_reclaim(&engine, &r, &held, &label);
    assert_eq!(r.adopted_by, Some(SURVIVOR as u16), "{r:?}");
    // Thread 1's connections to 7100 arrived on queue 1 (under software balancing too: a
    // port's new flows stay on the queue whose thread serves it), and only a poller of that
    // queue can reset them: thread 0. Those to 7101 under software balancing are steered to
    // thread 1, which keeps 7101's listen rule while down: dropped, they time out.
    finish_held(
        held,
        |port| port == SHARED_PORT || balance == Balance::Rss,
        &label,
    );
    check_first_connection(probe, SHARED_PORT, &label);

    // New connections to 7100, whichever queue the kernel deals them to, all served by thread
    // 0 (a flow on queue 1 only because thread 0 polls it).
    let failed = concurrent_echo(&net, ENGINE_IP.into(), 16, STEP_TIMEOUT, |i| {
        (SHARED_PORT, 4096 + i as usize * 37, 2000 + i)
    });
    assert!(
        failed.is_empty(),
        "{label}: new connections to {SHARED_PORT}: {failed:#?}"
    );
    let health = &engine.shared().health;
    assert_eq!(health.thread(FAILING).state(), ThreadState::Down);
    assert_eq!(health.thread(FAILING).restarts(), 0);

    let report = stop_and_check(engine);
    assert_eq!(report.failures.len(), 1, "{}", report.render_table());
    let failure = &report.failures[0];
    assert_eq!(
        (failure.thread, failure.state, failure.restarts),
        (FAILING, "down", 0),
        "{failure}"
    );
    eprintln!("{label}: {failure}");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn software_balancing_restarts_a_panicked_thread_under_the_kernels_connections() {
    if skip_without_client_net(&[]) {
        return;
    }
    restart(V4, Balance::Software, Idle::Sleep);
}

#[test]
fn rss_balancing_restarts_a_panicked_thread_under_the_kernels_connections() {
    if skip_without_client_net(&[]) {
        return;
    }
    restart(V4, Balance::Rss, Idle::Wait);
}

/// The same over IPv6: the restarted stack learns its neighbours from the neighbour
/// discovery messages the engine kept (`neighbors.rs`).
#[test]
fn software_balancing_restarts_a_panicked_thread_under_the_kernels_ipv6_connections() {
    if skip_without_client_net(&[]) {
        return;
    }
    restart(V6, Balance::Software, Idle::Sleep);
}

#[test]
fn software_balancing_redistributes_a_panicked_threads_queue() {
    if skip_without_client_net(&[]) {
        return;
    }
    redistribute(Balance::Software, Idle::Wait);
}

#[test]
fn rss_balancing_redistributes_a_panicked_threads_queue() {
    if skip_without_client_net(&[]) {
        return;
    }
    redistribute(Balance::Rss, Idle::Sleep);
}

/// `stop`: the run ends with an error that names thread 1 and the panic.
#[test]
fn a_panicked_thread_stops_the_engine_under_stop() {
    if skip_without_client_net(&[]) {
        return;
    }
    let label = "rss/sleep/stop";
    let _alone = measured_alone();
    let net = ClientNet::new();
    let engine = Engine::start(
        &config(&net.engine_if, Balance::Rss, Idle::Sleep, OnFailure::Stop),
        false,
    )
    .expect("the engine starts on the veth");
    let held = open_on_both_threads(&net, &engine, V4, Balance::Rss);

    let injected = Instant::now();
    fail_thread_1(&engine, &held);
    let r = wait_for_reclaim(&engine, |h| h.state() == ThreadState::Down);
    check_reclaim(&engine, &r, &held, label);
    while !engine.thread_ended() {
        assert!(
            injected.elapsed() < Duration::from_secs(2),
            "the engine was not asked to stop"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let shared = engine.shared().clone();
    let elapsed = engine.elapsed();
    let error = engine
        .stop()
        .expect_err("a failure under engine.on_failure = \"stop\" ends the run with an error")
        .to_string();
    assert!(
        error.contains(&format!("thread {FAILING}")) && error.contains("panic"),
        "{error}"
    );
    assert!(
        !error.contains(&format!("thread {SURVIVOR}")),
        "only thread {FAILING} failed: {error}"
    );
    eprintln!("{label}: the engine stopped: {error}");
    // Stopped with an error, every buffer is still back and every packet counted: the report
    // the run did not return, built from what it left.
    let report = RunReport::build(shared, elapsed);
    let table = report.render_table();
    assert!(
        report.conservation.ok,
        "conservation failed: {:?}\n{table}",
        report.conservation.failures
    );
    assert_eq!(report.pool.available, report.pool.capacity, "{table}");
    assert_eq!(report.failures.len(), 1, "{table}");
    assert_eq!(report.failures[0].state, "down", "{}", report.failures[0]);
    drop(held);
}
