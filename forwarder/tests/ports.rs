//! `flowsteer ports` as a user runs it. Without the `dpdk` feature it names the build command;
//! with it, it lists the vdevs the EAL arguments create (each run is its own process, as the EAL
//! initialises once per process). The EAL needs root: those tests print `skipped: needs root`
//! and pass without it, except under `CI=true`.

use std::process::{Command, Output};

fn flowsteer_ports(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowsteer"))
        .arg("ports")
        .args(args)
        .output()
        .expect("run flowsteer ports")
}

#[test]
fn help_says_how_devices_are_selected() {
    let out = flowsteer_ports(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "-- --vdev=net_null0",
        "--vdev=",
        "-a <PCI address>",
        "--log-level",
    ] {
        assert!(help.contains(expected), "{expected:?} in\n{help}");
    }
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn without_the_dpdk_feature_it_names_the_build_command_and_packages() {
    let out = flowsteer_ports(&["--", "--vdev=net_null0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(
        err.contains("cargo build --release -p forwarder --features dpdk"),
        "{err}"
    );
    assert!(
        err.contains("libdpdk-dev libclang-dev clang pkg-config"),
        "{err}"
    );
}

#[cfg(feature = "dpdk")]
mod with_dpdk {
    use std::path::PathBuf;

    use flowsteer_testrig::net::{unique_name, Veth};
    use flowsteer_testrig::{skip_without_root, skip_without_root_and, IP};

    use super::flowsteer_ports;

    /// A run's output, checked to have left nothing in the runtime directory of its file
    /// prefix (flowsteer's own, read from the first line).
    struct Run {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    }

    fn run(args: &[&str]) -> Run {
        let out = flowsteer_ports(args);
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let first = run.stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("DPDK 22.") && first.contains("EAL arguments: --no-huge"),
            "the first line names DPDK and the EAL arguments: {first:?}"
        );
        let prefix = first
            .split(' ')
            .find_map(|arg| arg.strip_prefix("--file-prefix="))
            .expect("flowsteer's file prefix");
        assert!(prefix.starts_with("flowsteer-ports-"), "{prefix}");
        // Root's runtime directory (the tests that get here run as root).
        let dir = PathBuf::from("/var/run/dpdk").join(prefix);
        assert!(!dir.exists(), "{} left behind", dir.display());
        run
    }

    /// The lines of the port named `name`, from its header to the next blank line.
    fn section<'a>(stdout: &'a str, name: &str) -> &'a str {
        let header = format!(": {name}\n");
        let start = stdout
            .find(&header)
            .unwrap_or_else(|| panic!("no port {name} in\n{stdout}"));
        let start = stdout[..start].rfind('\n').map_or(0, |n| n + 1);
        let end = stdout[start..]
            .find("\n\n")
            .map_or(stdout.len(), |n| start + n);
        &stdout[start..end]
    }

    #[test]
    fn null_and_ring_vdevs_are_listed_with_their_limits() {
        if skip_without_root() {
            return;
        }
        let run = run(&["--", "--vdev=net_null0", "--vdev=net_ring0"]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("\n2 ports"), "{}", run.stdout);

        let null = section(&run.stdout, "net_null0");
        for expected in [
            "port 0: net_null0",
            "  driver         net_null\n",
            "  MTU            1500 (min ",
            "  rx queues      max 1024; descriptors per queue min 0, max 65535, multiple of 1",
            "  tx queues      max 1024; descriptors per queue min 0, max 65535, multiple of 1",
            // net_null emulates RSS: it reports the IP flow types and a 128-entry table.
            "  RETA size      128\n",
        ] {
            assert!(null.contains(expected), "{expected:?} in\n{null}");
        }
        let rss = null
            .lines()
            .find(|l| l.starts_with("  RSS "))
            .expect("an RSS line");
        assert!(rss.contains(" ipv4 ipv4-frag ipv4-tcp ipv4-udp "), "{rss}");

        let ring = section(&run.stdout, "net_ring0");
        for expected in [
            "port 1: net_ring0",
            "  driver         net_ring\n",
            "  rx queues      max 16;",
            "  tx queues      max 16;",
            "  RSS            none (flow_type_rss_offloads 0x0)\n",
            "  RETA size      0\n",
            "  hash key size  0 bytes\n",
            "  link           down, speed 10 Gbps, full duplex, autoneg off\n",
        ] {
            assert!(ring.contains(expected), "{expected:?} in\n{ring}");
        }
        // The EAL's log stays on stderr, at the default level warning: no INFO lines.
        assert!(!run.stdout.contains("EAL:"), "{}", run.stdout);
        assert!(
            !run.stderr.contains("Detected CPU lcores"),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn an_af_packet_vdev_on_a_veth_shows_its_queue_pairs_and_no_rss() {
        if skip_without_root_and(&[IP]) {
            return;
        }
        let id = unique_name("fspt");
        let veth = Veth::new(format!("{id}a"), format!("{id}b"));
        let vdev = format!("--vdev=net_af_packet0,iface={},qpairs=2", veth.a);
        let run = run(&["--", &vdev]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("\n1 port "), "{}", run.stdout);
        let port = section(&run.stdout, "net_af_packet0");
        for expected in [
            "  driver         net_af_packet\n".to_owned(),
            format!("  interface      {} (kernel ifindex ", veth.a),
            "  rx queues      max 2;".to_owned(),
            "  tx queues      max 2;".to_owned(),
            "  RSS            none (flow_type_rss_offloads 0x0)\n".to_owned(),
        ] {
            assert!(port.contains(&expected), "{expected:?} in\n{port}");
        }
    }

    #[test]
    fn a_bad_eal_argument_fails_with_dpdk_text_and_a_hint() {
        if skip_without_root() {
            return;
        }
        let run = run(&["--", "--no-such-eal-option"]);
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(
                "flowsteer: the EAL did not start: Invalid argument (rte_eal_init, errno 22)"
            ),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("an EAL argument is wrong"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("no-such-eal-option"),
            "the EAL names the option: {}",
            run.stderr
        );
    }

    #[test]
    fn a_vdev_its_driver_cannot_probe_fails_naming_it() {
        if skip_without_root() {
            return;
        }
        let missing = unique_name("fspn");
        let vdev = format!("--vdev=net_af_packet0,iface={missing}");
        let run = run(&["--", &vdev, "--vdev=net_null0"]);
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("port 0: net_null0"), "{}", run.stdout);
        assert!(
            run.stderr
                .contains("flowsteer: --vdev=net_af_packet0 made no port: the driver's message"),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn no_device_is_no_error_and_says_how_to_name_one() {
        if skip_without_root() {
            return;
        }
        let run = run(&[]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("no DPDK ports: the EAL arguments create no device"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("--vdev=net_null0"), "{}", run.stdout);
    }

    #[test]
    fn the_eal_log_level_is_the_users() {
        if skip_without_root() {
            return;
        }
        let run = run(&["--log-level", "info", "--", "--vdev=net_null0"]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("EAL: Detected CPU lcores"),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains("EAL:"), "{}", run.stdout);
        assert!(run.stdout.contains("--log-level=info"), "{}", run.stdout);
    }
}
