//! `flowsteer run` on a DPDK port it cannot run, as a user meets it: a device that does not
//! exist, more queues than the device has, a redirection table size the device cannot hold, an
//! EAL argument the EAL refuses. Each is one message naming the key (with DPDK's text where
//! DPDK failed), the exit code README gives (2 for a configuration the device cannot run, 1 for
//! the EAL failing), and nothing left behind in the EAL's runtime directory or among the huge
//! page files. Also what `check` says of a DPDK port, and a run whose start line states the RSS
//! the device holds. Each run is a process of its own (the EAL starts once per process). Needs
//! root (the EAL); without it each test says so and passes, except under `CI=true`.
#![cfg(feature = "dpdk")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowsteer_testrig::skip_without_root;

/// The most a run here may take: each one fails at start or runs for half a second.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Where the EAL of a root process makes its runtime directories.
const RUNTIME_BASE: &str = "/var/run/dpdk";
/// Where huge page files are made by default.
const HUGEPAGES: &str = "/dev/hugepages";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn config_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "flowsteer-dpdk-errors-{}-{name}.toml",
        std::process::id()
    ))
}

/// A DPDK port configuration: `threads` threads on as many queues of `device`, the EAL made
/// with `eal_args`, then `extra` lines of `[port]`; no generator, no metrics endpoint.
fn config(threads: u16, device: &str, eal_args: &[&str], extra: &str) -> String {
    let eal: Vec<String> = eal_args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[engine]\nthreads = {threads}\n\n[port]\ndriver = \"dpdk\"\ndevice = \"{device}\"\n\
         eal_args = [{}]\nqueues = {threads}\n{extra}\n[traffic]\nprofile = \"none\"\n\n\
         [metrics]\nenabled = false\n",
        eal.join(", ")
    )
}

/// Runs `flowsteer <command> --config FILE [args]` on a file holding `contents` and checks that
/// the process left nothing under its EAL file prefix (flowsteer's own, named after its pid).
fn flowsteer(command: &str, name: &str, contents: &str, args: &[&str]) -> Run {
    let path = config_path(name);
    std::fs::write(&path, contents).expect("write the configuration");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowsteer"))
        .arg(command)
        .arg("--config")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flowsteer");
    let pid = child.id();
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("flowsteer {command} ({name}) still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    std::fs::remove_file(&path).ok();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let prefix = format!("flowsteer-ports-{pid}");
    assert_eq!(
        leftovers(Path::new(RUNTIME_BASE), &prefix),
        Vec::<String>::new(),
        "{name}: the run left its runtime directory; stderr:\n{}",
        run.stderr
    );
    assert_eq!(
        leftovers(Path::new(HUGEPAGES), &prefix),
        Vec::<String>::new(),
        "{name}: the run left huge page files"
    );
    run
}

/// The entries of `dir` whose name starts with `prefix` (none when `dir` does not exist).
fn leftovers(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// The run failed at start with `code` and one message of flowsteer's on stderr that holds
/// every one of `expected`; it is returned.
fn failed_with(run: &Run, code: i32, expected: &[&str]) -> String {
    assert_eq!(run.code, Some(code), "stderr:\n{}", run.stderr);
    let messages: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("flowsteer: "))
        .collect();
    assert_eq!(
        messages.len(),
        1,
        "one message of flowsteer's:\n{}",
        run.stderr
    );
    for text in expected {
        assert!(messages[0].contains(text), "{text:?} in {:?}", messages[0]);
    }
    assert!(
        !run.stderr.contains("panicked"),
        "no panic:\n{}",
        run.stderr
    );
    messages[0].to_owned()
}

#[test]
fn a_device_that_does_not_exist_is_named_with_dpdks_text_and_exit_2() {
    if skip_without_root() {
        return;
    }
    let run = flowsteer(
        "run",
        "no-device",
        &config(1, "net_null7", &["--vdev=net_null0"], ""),
        &["--duration", "1"],
    );
    failed_with(
        &run,
        2,
        &[
            "the configuration does not fit the device: port.device: no DPDK device \
             \"net_null7\"",
            "No such device",
            "flowsteer ports -- <port.eal_args>",
        ],
    );
}

#[test]
fn more_queues_than_the_device_has_name_port_queues_and_exit_2() {
    if skip_without_root() {
        return;
    }
    // An AF_PACKET device on the loopback interface with one queue pair (it only binds sockets;
    // nothing is sent).
    let run = flowsteer(
        "run",
        "queues",
        &config(
            2,
            "net_af_packet0",
            &["--vdev=net_af_packet0,iface=lo,qpairs=1"],
            "",
        ),
        &["--duration", "1"],
    );
    failed_with(
        &run,
        2,
        &["port.queues: net_af_packet0 has 1 queue pairs at most, got 2"],
    );
}

#[test]
fn a_table_size_the_device_cannot_hold_names_port_reta_size_its_sizes_and_exit_2() {
    if skip_without_root() {
        return;
    }
    // net_null's table has 128 entries.
    let run = flowsteer(
        "run",
        "reta",
        &config(2, "net_null0", &["--vdev=net_null0"], "reta_size = 256\n"),
        &["--duration", "1"],
    );
    failed_with(
        &run,
        2,
        &[
            "port.reta_size: net_null0: the device's redirection table has 128 entries; a \
             table of 2..=128 entries (a power of two, at least the 2 queues) is repeated to \
             fill it, got 256",
        ],
    );
}

#[test]
fn an_eal_argument_the_eal_refuses_is_dpdks_text_and_exit_1() {
    if skip_without_root() {
        return;
    }
    let run = flowsteer(
        "run",
        "eal",
        &config(
            1,
            "net_null0",
            &["--vdev=net_null0", "--no-such-option"],
            "",
        ),
        &["--duration", "1"],
    );
    let message = failed_with(
        &run,
        1,
        &[
            "port (dpdk): the EAL did not start with ",
            "--no-such-option",
            "Invalid argument (rte_eal_init, errno 22)",
            "an EAL argument is wrong",
        ],
    );
    // The arguments shown are the ones the EAL ran with: its prefix is the one checked above.
    assert!(
        message.contains("--file-prefix=flowsteer-ports-"),
        "{message}"
    );
    assert!(
        run.stderr
            .contains("unrecognized option '--no-such-option'"),
        "the EAL's own message names it:\n{}",
        run.stderr
    );
}

#[test]
fn check_says_what_it_cannot_know_of_the_device_and_where_to_look() {
    // No EAL: check does not start it, so no root is needed.
    let run = flowsteer(
        "check",
        "check",
        &config(
            2,
            "net_af_packet0",
            &["--vdev=net_af_packet0,iface=eth0,qpairs=2", "-m 64"],
            "",
        ),
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for expected in [
        "driver = \"dpdk\"",
        "# port.driver = \"dpdk\": check does not start the EAL, so the RSS of port.device \
         (\"net_af_packet0\") is not\n# known here. `flowsteer ports -- \
         --vdev=net_af_packet0,iface=eth0,qpairs=2 '-m 64'` lists it",
        "refuses a table size or key length the device does not take (exit 2)",
        "Checksum offload: off",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} in\n{}",
            run.stdout
        );
    }
    // The output is still a configuration: the notes are comments.
    let again = flowsteer("check", "check-again", &run.stdout, &[]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
}

#[test]
fn a_run_states_the_rss_the_device_holds_and_checksum_offload_off() {
    if skip_without_root() {
        return;
    }
    let key: Vec<String> = (0..40u8).map(|b| format!("{:02x}", b ^ 0xa5)).collect();
    let run = flowsteer(
        "run",
        "rss",
        &config(
            2,
            "net_null0",
            &["--vdev=net_null0"],
            &format!("rss_key = \"{}\"\nreta_size = 32\n", key.join(":")),
        ),
        &["--duration", "0.5"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let port = run
        .stderr
        .lines()
        .find(|l| l.starts_with("flowsteer: port: "))
        .unwrap_or_else(|| panic!("a port line in\n{}", run.stderr));
    for expected in [
        "(net_null0), 2 queues",
        "RSS ipv4 ipv4-frag ipv4-tcp ipv4-udp ipv4-other ipv6 ipv6-frag ipv6-tcp ipv6-udp \
         ipv6-other (RETA 128 entries: 32 entries 4 times, key a5a4a7a6a1a0a3a2..)",
        "checksum offload: off",
    ] {
        assert!(port.contains(expected), "{expected:?} in {port:?}");
    }

    // A device without RSS says so, and runs.
    let run = flowsteer(
        "run",
        "no-rss",
        &config(1, "net_ring0", &["--vdev=net_ring0"], ""),
        &["--duration", "0.5"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "no RSS (net_ring: flow_type_rss_offloads 0x0, RETA size 0): the driver fills the \
             queues, checksum offload: off"
        ),
        "{}",
        run.stderr
    );
}
