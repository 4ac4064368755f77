//! Servers of the client namespace's kernel that the engine's apps (tcp-proxy) connect out to: a
//! TCP server in this test's threads ([`KernelServer`]), a server process started with `ip
//! netns exec` ([`NsServer`]), and a directory of the test's files ([`TempDir`]).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::{ClientNet, CLIENT_IP};

/// A TCP server of the client namespace's kernel, in this test: runs `serve` on every connection
/// it accepts, each on its own thread, until dropped. The socket's reads and writes time out
/// after [`KernelServer::STALL`], so every connection's thread ends.
pub struct KernelServer {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl KernelServer {
    const STALL: Duration = Duration::from_secs(5);

    pub fn start(net: &ClientNet, port: u16, serve: fn(TcpStream)) -> KernelServer {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let (bound, is_bound) = mpsc::channel();
        let acceptor = {
            let stop = stop.clone();
            let accepted = accepted.clone();
            net.client(move || {
                let listener = match TcpListener::bind((CLIENT_IP, port))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                {
                    Ok(listener) => {
                        let _ = bound.send(Ok(()));
                        listener
                    }
                    Err(e) => {
                        let _ = bound.send(Err(format!("bind {CLIENT_IP}:{port}: {e}")));
                        return;
                    }
                };
                // Polling the flag keeps the acceptor's end in the test's hands without a
                // wake-up connection, which would pass through nobody's counters.
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            thread::spawn(move || {
                                let bounded = stream.set_nonblocking(false).is_ok()
                                    && stream.set_read_timeout(Some(Self::STALL)).is_ok()
                                    && stream.set_write_timeout(Some(Self::STALL)).is_ok();
                                if bounded {
                                    serve(stream);
                                }
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        is_bound
            .recv_timeout(Duration::from_secs(5))
            .expect("the server's thread reports its bind")
            .expect("the server binds");
        KernelServer {
            stop,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for KernelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Echoes every byte, half-closes after the client did.
pub fn echo_until_eof(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// A server process in the client namespace (`ip netns exec`), killed when dropped.
pub struct NsServer {
    child: Child,
}

impl NsServer {
    /// Starts `program args` in the namespace and waits until it listens on TCP `port`.
    pub fn start(
        net: &ClientNet,
        name: &'static str,
        program: &str,
        args: &[&str],
        port: u16,
    ) -> Self {
        let child = net
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", net.ns));
        let mut server = NsServer { child };
        // `ss` rather than a probe connection: iperf3 would take a probe for a client.
        let filter = format!("sport = :{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited before listening on {port}: {status}");
            }
            let listening = Command::new("ip")
                .args(["netns", "exec", &net.ns, "ss", "-Htln", &filter])
                .output()
                .is_ok_and(|out| out.status.success() && !out.stdout.is_empty());
            if listening {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{name} does not listen on {port} after 10 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        // `ip netns exec` execs the program, so the child is the server itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of this test (the file http.server serves, what curl wrote), removed when
/// dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(purpose: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fskc-{purpose}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
