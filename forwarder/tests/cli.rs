//! The `flowsteer` binary as a user drives it: check, run with a report, and the metrics endpoint
//! (including bad HTTP) while it runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowsteer_testrig::net::{ip, unique_name, Veth};
use flowsteer_testrig::{skip_without_root_and, IP};

fn flowsteer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowsteer"))
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flowsteer-test-{}-{name}", std::process::id()))
}

/// Runs `flowsteer check` on a configuration file holding `contents`.
fn check(name: &str, contents: &str) -> std::process::Output {
    let path = temp_path(name);
    std::fs::write(&path, contents).unwrap();
    let out = flowsteer()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(path).ok();
    out
}

#[test]
fn check_prints_the_effective_configuration() {
    let out = check("good.toml", "[engine]\nthreads = 2\nbalance = \"rss\"\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("balance = \"rss\""), "{text}");
    assert!(
        text.contains("[metrics]"),
        "every section is printed: {text}"
    );
}

#[test]
fn check_rejects_bad_values_and_unknown_keys_with_the_key_path() {
    let out = check("bad.toml", "[engine]\nthreads = 0\nthread = 3\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("engine.thread"), "{err}");
    let out = check("bad-threads.toml", "[engine]\nthreads = 0\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("engine.threads: must be 1..=64, got 0"),
        "{err}"
    );
}

/// A DPDK port in a build without DPDK: a configuration error that says how to build it, from
/// `check` and from `run` alike, before anything starts.
#[cfg(not(feature = "dpdk"))]
#[test]
fn a_dpdk_port_in_a_build_without_dpdk_says_how_to_build_it() {
    let config =
        "[port]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\n[traffic]\nprofile = \"none\"\n";
    let out = check("dpdk.toml", config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "needs a flowsteer built with DPDK: cargo build --release -p forwarder --features dpdk"
        ),
        "{stderr}"
    );
    let path = temp_path("dpdk-run.toml");
    std::fs::write(&path, config).unwrap();
    let out = flowsteer()
        .args(["run", "--duration", "1", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(path).ok();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("libdpdk-dev"));
}

#[test]
fn run_rejects_a_bad_duration() {
    let out = flowsteer()
        .args(["run", "--duration", "-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    // Half-close: a request cut short is then seen as incomplete at once, not after the timeout.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    out.push_str(&String::from_utf8_lossy(&buf));
    out
}

/// Sends `sig` to `child`, which must not be reaped yet (its pid is still its own then).
fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill takes no pointers; the pid is the unreaped child's.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// Waits for the metrics endpoint, which the engine opens as it starts its threads; returns when.
fn wait_for_port(port: u16) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "metrics endpoint never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Instant::now()
}

/// Stops a run started without `--duration` as an operator would (SIGTERM), once it has run
/// long enough since `up` to have printed a status line. A fixed `--duration` would race the
/// test's requests on a loaded machine, where start-up alone can take seconds.
fn stop_after_a_status_line(child: &Child, up: Instant) {
    let status_line_due = up + Duration::from_millis(1500);
    if let Some(wait) = status_line_due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    // The child is not reaped yet, so its pid is still its own.
    signal(child, libc::SIGTERM);
}

#[test]
fn run_serves_metrics_survives_bad_http_and_writes_a_report() {
    let port = free_port();
    let config = temp_path("metrics.toml");
    let report = temp_path("report.json");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let child = flowsteer()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = wait_for_port(port);

    // Hostile input first: the endpoint must answer each precisely and keep serving.
    assert!(http(port, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(http(port, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(http(port, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(port, &[b'a'; 8192]).starts_with("HTTP/1.1 431"));
    assert!(http(port, b"GET /metr").starts_with("HTTP/1.1 400"));

    let body = http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for name in [
        "flowsteer_rx_packets_total{thread=\"0\"}",
        "flowsteer_handoff_packets_total",
        "flowsteer_dropped_packets_total",
        "flowsteer_misdirected_packets_total",
        "flowsteer_flowtable_lookups_total",
        "flowsteer_flowtable_entries",
        "flowsteer_swq_depth_packets",
        "flowsteer_pool_buffers",
        "flowsteer_idle_polls_total",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    for name in [
        "flowsteer_stack_",
        "flowsteer_app_",
        "flowsteer_link_copies_total",
    ] {
        assert!(!body.contains(name), "{name} without a stack in\n{body}");
    }

    stop_after_a_status_line(&child, up);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("Mpps"),
        "status lines are printed: {stderr}"
    );
    assert!(
        stdout.contains("conservation:") && stdout.contains("ok"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["conservation"]["ok"], true);
    assert!(json["total"]["rx"].as_u64().unwrap() > 0);
    assert_eq!(json["per_thread"].as_array().unwrap().len(), 2);
    std::fs::remove_file(config).ok();
    std::fs::remove_file(report).ok();
}

#[test]
fn run_with_apps_serves_the_stack_series_and_reports_the_stack() {
    let port = free_port();
    let config = temp_path("apps.toml");
    let report = temp_path("apps-report.json");
    std::fs::write(
        &config,
        format!(
            "[traffic]\nprofile = \"none\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n"
        ),
    )
    .unwrap();
    let child = flowsteer()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = wait_for_port(port);

    let body = http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let app = "thread=\"1\",app=\"tcp-echo\",port=\"7\"";
    for series in [
        "flowsteer_stack_frames_total{thread=\"0\",direction=\"in\"} 0".to_string(),
        "flowsteer_stack_no_socket_packets_total{thread=\"0\"} 0".to_string(),
        "flowsteer_stack_rules_added_total{thread=\"1\"} 0".to_string(),
        "flowsteer_misdirected_packets_total{thread=\"1\"} 0".to_string(),
        "flowsteer_link_copies_total{thread=\"0\"} 0".to_string(),
        format!("flowsteer_app_connections_opened_total{{{app}}} 0"),
        format!("flowsteer_app_active_connections{{{app}}} 0"),
        format!("flowsteer_app_bytes_total{{{app},direction=\"out\"}} 0"),
        format!("flowsteer_app_requests_total{{{app}}} 0"),
    ] {
        assert!(
            body.lines().any(|line| line == series),
            "missing {series} in\n{body}"
        );
    }

    stop_after_a_status_line(&child, up);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("| connections 0/s, 0 active"),
        "status lines tell the connections: {stderr}"
    );
    assert!(stdout.contains("tcp-echo:7"), "{stdout}");
    assert!(stdout.contains("+ link copies 0 ="), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["conservation"]["ok"], true);
    let stack = json["stack"].as_array().expect("a stack section");
    assert_eq!(stack.len(), 2);
    assert_eq!(stack[1]["apps"][0]["kind"], "tcp-echo");
    assert_eq!(stack[1]["apps"][0]["port"], 7);
    assert_eq!(json["total"]["stack"]["connections_opened"], 0);
    std::fs::remove_file(config).ok();
    std::fs::remove_file(report).ok();
}

/// A run started with `config_text`, its stderr read line by line on a thread.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    config: PathBuf,
}

impl Running {
    fn start(name: &str, config_text: &str) -> Running {
        let config = temp_path(name);
        std::fs::write(&config, config_text).unwrap();
        let mut child = flowsteer()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let all_w = all.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all_w.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            stderr: all,
            config,
        }
    }

    /// The first stderr line containing `what`, waiting at most 20 s.
    fn wait_line(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {what:?} on stderr:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Sends `sig` (`libc::SIGTERM`, ...) and waits for the exit: (code, stdout, stderr).
    fn signal_and_wait(mut self, sig: libc::c_int) -> (Option<i32>, String, String) {
        signal(&self.child, sig);
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not stop within 30 s of signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends with the pipe; give it a moment to collect the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().unwrap().clone();
        std::fs::remove_file(&self.config).ok();
        (status.code(), stdout, stderr)
    }
}

/// The metrics address the start line announces.
fn announced_metrics_addr(start_line: &str) -> std::net::SocketAddr {
    let url = start_line
        .split("metrics http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no metrics URL in {start_line:?}"));
    url.trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("{url:?} in {start_line:?}: {e}"))
}

#[test]
fn run_with_metrics_port_0_prints_the_port_it_bound() {
    let run = Running::start(
        "port0.toml",
        "[traffic]\nprofile = \"none\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let line = run.wait_line("flowsteer: ");
    let addr = announced_metrics_addr(&line);
    assert_ne!(addr.port(), 0, "{line}");
    let body = http(
        addr.port(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    // Loopback: no warning about other hosts.
    let (code, _, stderr) = run.signal_and_wait(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn sighup_stops_a_run_gracefully_with_the_final_table() {
    let port = free_port();
    let run = Running::start(
        "sighup.toml",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // Serving metrics means the threads run.
    wait_for_port(port);
    run.wait_line("flowsteer: ");
    let (code, stdout, stderr) = run.signal_and_wait(libc::SIGHUP);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("conservation:") && stdout.contains("ok"),
        "the final table: {stdout}"
    );
}

#[test]
fn help_names_the_signals_that_stop_a_run() {
    let out = flowsteer().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIGHUP"), "{text}");
}

/// An afpacket configuration on `interface` (no generator, which needs uveth).
fn afpacket_config(interface: &str) -> String {
    format!(
        "[port]\ndriver = \"afpacket\"\ninterface = \"{interface}\"\n\n[traffic]\nprofile = \"none\"\n"
    )
}

#[test]
fn check_and_run_refuse_an_interface_that_does_not_exist() {
    let name = format!("fsno{}", std::process::id() % 100_000);
    let out = check("no-if.toml", &afpacket_config(&name));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "port.interface: must be a network interface of this host (see `ip link`), got \"{name}\": no such interface"
        )),
        "{err}"
    );
    // `run` says the same before it opens anything.
    let config = temp_path("run-no-if.toml");
    std::fs::write(&config, afpacket_config(&name)).unwrap();
    let out = flowsteer()
        .args(["run", "--duration", "5", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    std::fs::remove_file(config).ok();
    assert_eq!(out.status.code(), Some(2));
    let run_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        run_err.contains("port.interface: must be a network interface of this host"),
        "{run_err}"
    );
    assert!(!run_err.contains("setup failed"), "{run_err}");
}

#[test]
fn check_refuses_loopback_for_its_mtu() {
    // lo exists and is up, but its MTU (65536) never fits a packet buffer.
    let mtu: u32 = std::fs::read_to_string("/sys/class/net/lo/mtu")
        .expect("a Linux host with lo")
        .trim()
        .parse()
        .unwrap();
    let out = check("lo.toml", &afpacket_config("lo"));
    let err = String::from_utf8_lossy(&out.stderr);
    if mtu + 14 <= 2048 {
        assert!(out.status.success(), "lo's MTU {mtu} fits: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "pool.data_room: must hold a frame of port.interface \"lo\" (MTU {mtu} + 14 bytes of Ethernet header = {}), got 2048",
            mtu + 14
        )),
        "{err}"
    );
    assert!(
        !err.contains("port.interface:"),
        "lo exists and is up: {err}"
    );
}

#[test]
fn check_refuses_an_interface_that_is_down() {
    if skip_without_root_and(&[IP]) {
        return;
    }
    let id = unique_name("fsdn");
    let veth = Veth::new(format!("{id}a"), format!("{id}b"));
    let out = check("down.toml", &afpacket_config(&veth.a));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "port.interface: must be up (`ip link set {0} up`), got \"{0}\": the interface is down",
            veth.a
        )),
        "{err}"
    );
    // Up (without carrier: its peer is down) it passes.
    ip(&["link", "set", &veth.a, "up"]);
    let out = check("up.toml", &afpacket_config(&veth.a));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_closed_terminal_stops_a_run_gracefully() {
    use std::os::fd::{FromRawFd, OwnedFd};
    // stdout and stderr on a pseudo-terminal, which is then closed (writes to it fail with EIO)
    // as the hang-up is signalled: the run must still stop cleanly and write its report.
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the name, termios and size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let port = free_port();
    let config = temp_path("hangup.toml");
    let report = temp_path("hangup-report.json");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut child = flowsteer()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let up = wait_for_port(port);
    // Let a status line or two reach the terminal (drained so that it never fills).
    let mut terminal = std::fs::File::from(master);
    let drain = {
        let mut t = terminal.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(t.read(&mut buf), Ok(n) if n > 0) {}
        })
    };
    std::thread::sleep(
        (up + Duration::from_millis(1500)).saturating_duration_since(Instant::now()),
    );
    let _ = terminal.flush();
    // Hang up: the master goes away, the signal follows at once.
    drop(terminal);
    signal(&child, libc::SIGHUP);
    // The streams that were the terminal are silenced as the signal arrives, long before the
    // run has stopped (the child is not reaped yet, so its /proc entry is its own).
    let fd2 = format!("/proc/{}/fd/2", child.id());
    let mut silenced = false;
    while let Ok(target) = std::fs::read_link(&fd2) {
        if target == std::path::Path::new("/dev/null") {
            silenced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = drain.join();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(silenced, "stderr still pointed at the closed terminal");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report is written"))
            .unwrap();
    assert_eq!(json["conservation"]["ok"], true);
    std::fs::remove_file(config).ok();
    std::fs::remove_file(report).ok();
}
