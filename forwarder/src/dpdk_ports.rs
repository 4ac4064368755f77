//! `flowsteer ports`: the DPDK ports (ethdevs) an EAL command line creates, each described as
//! testpmd's `show port info` does, so that a port configuration can be written from what the
//! device offers: queues, descriptor limits, RSS flow types, RETA and key size, MTU, link,
//! offloads.
//!
//! The EAL arguments are flowsteer's defaults ([`eal_args`]: no huge pages, no shared
//! configuration, no PCI scan, no telemetry, one lcore, a file prefix of its own) followed by
//! the user's, each default left out when the user gives an option of its kind. With the `dpdk`
//! feature `list` initialises the EAL once, prints every port, closes them, cleans the EAL up
//! and removes the runtime directory it made; without it, the command says how to build it
//! ([`NEEDS_DPDK`]).

/// What `flowsteer ports` says in a build without the `dpdk` feature.
pub const NEEDS_DPDK: &str = "flowsteer: `ports` needs a build with DPDK: cargo build --release \
     -p forwarder --features dpdk (Debian/Ubuntu: apt-get install libdpdk-dev libclang-dev clang \
     pkg-config)";

/// The EAL's log levels, for `--log-level` (`rte_log.h`, most severe first).
pub const LOG_LEVELS: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
];

/// One default EAL argument and the options that replace it: when the user's EAL arguments
/// hold one of `unless` (in any of its forms: `--opt`, `--opt=v`, `-o v`, `-ov`), the default
/// is left out.
struct EalDefault {
    args: Vec<String>,
    unless: &'static [&'static str],
}

/// Whether `user` holds the option `opt` (`--long` or `-s`) in any form.
pub(crate) fn gives(user: &[String], opt: &str) -> bool {
    user.iter().any(|arg| {
        if opt.starts_with("--") {
            arg == opt || arg.strip_prefix(opt).is_some_and(|v| v.starts_with('='))
        } else {
            !arg.starts_with("--") && arg.starts_with(opt)
        }
    })
}

/// The options that ask for huge pages: each leaves `--no-huge` out (`--in-memory` and
/// `--socket-mem` are refused with `--no-huge`, which implies `--legacy-mem` in 22.11).
const HUGE_PAGE_OPTIONS: &[&str] = &[
    "--no-huge",
    "--in-memory",
    "--socket-mem",
    "--socket-limit",
    "--huge-dir",
    "--huge-unlink",
    "--huge-worker-stack",
    "--match-allocations",
];

/// The file prefix flowsteer gives the EAL when the user gives none: its runtime directory
/// (`/var/run/dpdk/<prefix>` for root) is then this process's alone, and removed at the end.
fn own_file_prefix(pid: u32) -> String {
    format!("flowsteer-ports-{pid}")
}

/// flowsteer's default EAL arguments, each with the options that replace it; `huge` when the
/// user's arguments ask for huge pages.
fn defaults(log_level: &str, cpu: usize, pid: u32, huge: bool) -> Vec<EalDefault> {
    let one = |arg: &str, unless| EalDefault {
        args: vec![arg.to_owned()],
        unless,
    };
    let mut defaults = vec![
        // Anonymous memory: works on a machine without huge pages (a listing needs little).
        one("--no-huge", HUGE_PAGE_OPTIONS),
        // No shared configuration: no config file, no IPC socket in the runtime directory.
        one(
            "--no-shconf",
            &["--no-shconf", "--in-memory", "--proc-type"],
        ),
    ];
    if huge {
        // With huge pages, no hugepage files either (refused with --no-huge, so only here).
        defaults.push(one(
            "--in-memory",
            &["--in-memory", "--proc-type", "--legacy-mem"],
        ));
    }
    defaults.extend([
        // No PCI scan: no NIC bound to vfio-pci or igb_uio is taken by accident.
        one("--no-pci", &["--no-pci", "-a", "--allow", "-b", "--block"]),
        // No telemetry socket in the runtime directory.
        one("--no-telemetry", &["--no-telemetry", "--telemetry"]),
        // One lcore (no EAL worker threads), one this process may run on.
        EalDefault {
            args: vec!["-l".to_owned(), cpu.to_string()],
            unless: &["-l", "-c", "--lcores"],
        },
        one(
            &format!("--file-prefix={}", own_file_prefix(pid)),
            &["--file-prefix"],
        ),
        // Never left out: a later --log-level among the user's arguments applies after it.
        one(&format!("--log-level={log_level}"), &[]),
    ]);
    defaults
}

/// The EAL arguments of `flowsteer ports`: the defaults the user's arguments leave in, then
/// the user's. `cpu` is the lcore to run on, `pid` names the file prefix.
fn eal_args_with(user: &[String], log_level: &str, cpu: usize, pid: u32) -> Vec<String> {
    let huge = !gives(user, "--no-huge") && HUGE_PAGE_OPTIONS.iter().any(|o| gives(user, o));
    let mut args: Vec<String> = defaults(log_level, cpu, pid, huge)
        .into_iter()
        .filter(|d| !d.unless.iter().any(|opt| gives(user, opt)))
        .flat_map(|d| d.args)
        .collect();
    args.extend(user.iter().cloned());
    args
}

/// The EAL arguments `flowsteer ports -- USER` runs with: flowsteer's defaults, each left out
/// when `user` holds an option of its kind, then `user`:
///
/// | default | left out for |
/// |---|---|
/// | `--no-huge` | `--in-memory`, `--socket-mem`, `--socket-limit`, `--huge-dir`, `--huge-unlink`, `--huge-worker-stack`, `--match-allocations` |
/// | `--no-shconf` | `--in-memory`, `--proc-type` |
/// | `--in-memory`, only when `user` asks for huge pages | `--proc-type`, `--legacy-mem` |
/// | `--no-pci` | `-a`/`--allow`, `-b`/`--block` |
/// | `--no-telemetry` | `--telemetry` |
/// | `-l <first CPU this process may use>` | `-l`, `-c`, `--lcores` |
/// | `--file-prefix=flowsteer-ports-<pid>` | `--file-prefix` |
/// | `--log-level=<log_level>` | never (a later one among `user` applies after it) |
///
/// (`--no-huge` implies `--legacy-mem` in DPDK 22.11, which refuses it with `--in-memory`:
/// without huge pages `--no-shconf` keeps the runtime directory empty instead.)
pub fn eal_args(user: &[String], log_level: &str) -> Vec<String> {
    let cpu = crate::pin::first_allowed_core().unwrap_or(0);
    eal_args_with(user, log_level, cpu, std::process::id())
}

#[cfg(feature = "dpdk")]
pub use listing::{end_eal, list, start_eal};

#[cfg(feature = "dpdk")]
mod listing {
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use dpdk_sys::ethdev::{self, DescLimits, DevInfo, Link};
    use dpdk_sys::{eal, rss};
    use flowsteer_nic::port::mac_text;

    use super::{eal_args, gives, own_file_prefix};

    /// Where the EAL makes its runtime directory (`eal_create_runtime_dir` of 22.11):
    /// `/var/run/dpdk` for root, else `$XDG_RUNTIME_DIR/dpdk` or `/tmp/dpdk`; the directory of a
    /// run is `<this>/<file prefix>`.
    fn runtime_base() -> PathBuf {
        // SAFETY: getuid takes no arguments and cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        let parent = if root {
            PathBuf::from("/var/run")
        } else {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
        };
        parent.join("dpdk")
    }

    /// Where a value starts: two spaces, the label, padding.
    const LABEL_WIDTH: usize = 17;
    /// Lines of names (RSS flow types, offloads) wrap to at most this many characters.
    const LINE_WIDTH: usize = 100;

    /// What is known of one port: each query's answer, or its error.
    struct PortFacts {
        port: u16,
        name: Result<String, dpdk_sys::Error>,
        info: Result<DevInfo, dpdk_sys::Error>,
        mac: Result<[u8; 6], dpdk_sys::Error>,
        socket: Result<Option<u32>, dpdk_sys::Error>,
        link: Result<Link, dpdk_sys::Error>,
        mtu: Result<u16, dpdk_sys::Error>,
    }

    impl PortFacts {
        fn query(port: u16) -> PortFacts {
            PortFacts {
                port,
                name: ethdev::name(port),
                info: ethdev::info(port),
                mac: ethdev::mac_addr(port),
                socket: ethdev::socket_id(port),
                link: ethdev::link_nowait(port),
                mtu: ethdev::mtu(port),
            }
        }

        /// How many queries failed.
        fn errors(&self) -> usize {
            [
                self.name.is_err(),
                self.info.is_err(),
                self.mac.is_err(),
                self.socket.is_err(),
                self.link.is_err(),
                self.mtu.is_err(),
            ]
            .iter()
            .filter(|&&failed| failed)
            .count()
        }

        fn render(&self) -> String {
            let name = self.name.as_ref().map_or("?", String::as_str);
            let mut out = format!("port {}: {name}\n", self.port);
            let unreadable = |e: &dpdk_sys::Error| format!("unreadable: {e}");
            if let Err(e) = &self.name {
                line(&mut out, "name", &unreadable(e));
            }
            match &self.info {
                Ok(info) => render_info(&mut out, info, self),
                Err(e) => {
                    line(
                        &mut out,
                        "MAC address",
                        &text(&self.mac, |mac| mac_text(*mac)),
                    );
                    line(&mut out, "link", &text(&self.link, link_text));
                    line(&mut out, "MTU", &text(&self.mtu, u16::to_string));
                    line(&mut out, "device info", &unreadable(e));
                }
            }
            out
        }
    }

    /// A query's answer through `show`, or its error.
    fn text<T>(answer: &Result<T, dpdk_sys::Error>, show: impl Fn(&T) -> String) -> String {
        match answer {
            Ok(value) => show(value),
            Err(e) => format!("unreadable: {e}"),
        }
    }

    fn line(out: &mut String, label: &str, value: &str) {
        let text = format!("  {label:<w$}{value}", w = LABEL_WIDTH - 2);
        out.push_str(text.trim_end());
        out.push('\n');
    }

    /// `words` separated by spaces, wrapped at [`LINE_WIDTH`] onto lines that start at the
    /// value column (a word longer than a line gets one of its own).
    fn wrapped(words: &[String]) -> String {
        let mut text = String::new();
        let mut column = LABEL_WIDTH;
        for word in words {
            if column > LABEL_WIDTH && column + 1 + word.len() > LINE_WIDTH {
                text.push('\n');
                text.push_str(&" ".repeat(LABEL_WIDTH));
                column = LABEL_WIDTH;
            } else if column > LABEL_WIDTH {
                text.push(' ');
                column += 1;
            }
            text.push_str(word);
            column += word.len();
        }
        text
    }

    fn link_text(link: &Link) -> String {
        format!(
            "{}, speed {}, {} duplex, autoneg {}",
            if link.up { "up" } else { "down" },
            link.speed_text(),
            if link.full_duplex { "full" } else { "half" },
            if link.autoneg { "on" } else { "off" },
        )
    }

    fn queues_text(max: u16, lim: &DescLimits) -> String {
        format!(
            "max {max}; descriptors per queue min {}, max {}, multiple of {}",
            lim.min, lim.max, lim.align
        )
    }

    /// The names of a mask's bits, then the mask: `"a b (0x3)"`, or `"none (0x0)"`.
    fn names_text(names: Vec<String>, mask: u64, what: &str) -> String {
        let mut words = names;
        if words.is_empty() {
            words.push("none".to_owned());
        }
        words.push(format!("({what}{mask:#x})"));
        wrapped(&words)
    }

    /// The name of the kernel interface with index `index`, if there is one.
    fn interface_name(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: buf has IF_NAMESIZE bytes, the most if_indextoname writes (NUL included);
        // it returns NULL or buf.
        let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if name.is_null() {
            return None;
        }
        // SAFETY: on success buf holds a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }

    fn render_info(out: &mut String, info: &DevInfo, facts: &PortFacts) {
        line(out, "driver", &info.driver_name);
        line(out, "MAC address", &text(&facts.mac, |mac| mac_text(*mac)));
        line(
            out,
            "NUMA socket",
            &text(&facts.socket, |s| {
                s.map_or_else(|| "any".to_owned(), |s| s.to_string())
            }),
        );
        if info.if_index != 0 {
            let name = interface_name(info.if_index).unwrap_or_else(|| "?".to_owned());
            line(
                out,
                "interface",
                &format!("{name} (kernel ifindex {})", info.if_index),
            );
        }
        line(out, "link", &text(&facts.link, link_text));
        line(
            out,
            "MTU",
            &format!(
                "{} (min {}, max {}); max rx frame {} bytes",
                text(&facts.mtu, u16::to_string),
                info.min_mtu,
                info.max_mtu,
                info.max_rx_pktlen
            ),
        );
        line(
            out,
            "rx queues",
            &queues_text(info.max_rx_queues, &info.rx_desc_lim),
        );
        line(
            out,
            "tx queues",
            &queues_text(info.max_tx_queues, &info.tx_desc_lim),
        );
        let rss = info.flow_type_rss_offloads;
        let rss_text = if rss == 0 {
            "none (flow_type_rss_offloads 0x0)".to_owned()
        } else {
            names_text(rss::flow_type_names(rss), rss, "flow_type_rss_offloads ")
        };
        line(out, "RSS", &rss_text);
        line(out, "RETA size", &info.reta_size.to_string());
        line(
            out,
            "hash key size",
            &format!("{} bytes", info.hash_key_size),
        );
        line(
            out,
            "rx offloads",
            &names_text(
                ethdev::rx_offload_names(info.rx_offload_capa),
                info.rx_offload_capa,
                "",
            ),
        );
        line(
            out,
            "tx offloads",
            &names_text(
                ethdev::tx_offload_names(info.tx_offload_capa),
                info.tx_offload_capa,
                "",
            ),
        );
    }

    /// The device names of the `--vdev` arguments in `user` (`net_af_packet0` of
    /// `--vdev=net_af_packet0,iface=eth0`), which are the names of the ports they make.
    fn vdev_names(user: &[String]) -> Vec<&str> {
        let mut names = Vec::new();
        let mut args = user.iter();
        while let Some(arg) = args.next() {
            let value = match arg.strip_prefix("--vdev") {
                Some("") => args.next().map(String::as_str),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            if let Some(name) = value.and_then(|v| v.split(',').next()) {
                names.push(name);
            }
        }
        names
    }

    /// What to do about an `rte_eal_init` failure with errno `code`, given the arguments it
    /// ran with and the user's.
    fn eal_hint(code: i32, args: &[String], user: &[String]) -> String {
        match code {
            libc::ENOMEM if !args.iter().any(|a| a == "--no-huge") => {
                let why = [
                    "--socket-mem",
                    "--socket-limit",
                    "--huge-dir",
                    "--huge-unlink",
                    "--huge-worker-stack",
                    "--match-allocations",
                ]
                .into_iter()
                .filter(|opt| gives(user, opt))
                .collect::<Vec<_>>()
                .join(", ");
                format!(
                    "no huge pages, or too few: reserve some (dpdk-hugepages.py --setup 1G), or \
                     drop {why} so that flowsteer adds --no-huge"
                )
            }
            libc::ENOMEM => "not enough memory: raise it with -m <MB>".to_owned(),
            libc::EACCES => "the EAL needs root, or the rights to the huge page and VFIO \
                             devices it uses"
                .to_owned(),
            libc::EINVAL => "an EAL argument is wrong or conflicts with another; the EAL's \
                             message above names it (dpdk-testpmd --help lists the EAL options)"
                .to_owned(),
            libc::ENODEV => "a device argument names no bus or driver (--vdev=net_null0, -a \
                             0000:01:00.0), or the buses could not be scanned"
                .to_owned(),
            libc::ENOTSUP => "a device could not be probed: the driver's message above says \
                              why (a vdev's arguments, such as net_af_packet's iface=, or a PCI \
                              device not bound to vfio-pci)"
                .to_owned(),
            libc::EAGAIN => {
                "VFIO could not be set up: modprobe vfio-pci, or list vdevs only".to_owned()
            }
            _ => "the EAL's message above says which step failed".to_owned(),
        }
    }

    /// Removes the runtime directory the EAL made for this run, when it is this run's alone
    /// (flowsteer's file prefix), and the directory above it when it did not exist before;
    /// warns when the EAL left something in it.
    fn remove_runtime_dir(dir: Option<&Path>, base: &Path, base_existed: bool) {
        if let Some(dir) = dir {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!(
                    "flowsteer: the EAL's runtime directory {} stays: {e}",
                    dir.display()
                ),
            }
        }
        if !base_existed {
            // Fails, harmlessly, when another DPDK process made its own directory there since.
            let _ = std::fs::remove_dir(base);
        }
    }

    /// Starts the EAL for the engine's DPDK port with [`eal_args`] of `user` (`port.eal_args`),
    /// its log on stderr at warning level; nothing when it runs already in this process (a
    /// second engine). The error says what failed and what to do.
    pub fn start_eal(user: &[String]) -> Result<(), String> {
        if eal::is_initialized() {
            return Ok(());
        }
        let args = eal_args(user, "warning");
        // Only possible before the EAL starts, which it has not.
        let _ = eal::log_to_stderr();
        eal::init(&args).map_err(|e| {
            format!(
                "the EAL did not start with {}: {} ({}, errno {}); {}",
                args.join(" "),
                e.message(),
                e.op(),
                e.code(),
                eal_hint(e.code(), &args, user)
            )
        })?;
        // Without a shared configuration the EAL leaves its runtime directory empty and never
        // uses it again: remove it now, so that a process that never reaches `end_eal` (a test,
        // a crash) leaves nothing behind (fails harmlessly when not empty).
        if args.iter().any(|a| a == "--no-shconf") {
            if let Some(dir) = eal::runtime_dir() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    /// Ends the EAL once the engine's DPDK port is stopped and no thread uses DPDK any more
    /// (`rte_eal_cleanup`, which also closes the devices), and removes the runtime directory
    /// made under this process's file prefix. Nothing when the EAL never started.
    pub fn end_eal() {
        if !eal::is_initialized() {
            return;
        }
        let dir = eal::runtime_dir();
        // SAFETY: called by main after the engine stopped: its threads have ended, its port is
        // stopped and its pool unused, so no DPDK object is used after the cleanup.
        if let Err(e) = unsafe { eal::cleanup() } {
            eprintln!("flowsteer: {e}");
        }
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// `flowsteer ports`: initialises the EAL with [`eal_args`] of `user` (its log on stderr at
    /// `log_level`), prints every port on stdout, closes the ports, cleans the EAL up and removes
    /// its runtime directory. Returns the exit code: 0 when every port was read (also when there
    /// is none), 1 when the EAL failed (its text and a hint on stderr), a `--vdev` made no port
    /// (its driver failed to probe it, which the EAL only logs) or a query failed.
    pub fn list(user: &[String], log_level: &str) -> u8 {
        let args = eal_args(user, log_level);
        let base = runtime_base();
        let base_existed = base.exists();
        let own_dir: Option<PathBuf> =
            (!gives(user, "--file-prefix")).then(|| base.join(own_file_prefix(std::process::id())));

        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "DPDK {}, EAL arguments: {}",
            dpdk_sys::DPDK_VERSION,
            args.join(" ")
        );
        let _ = stdout.flush();

        if let Err(e) = eal::log_to_stderr() {
            eprintln!("flowsteer: {e}");
            return 1;
        }
        if let Err(e) = eal::init(&args) {
            eprintln!(
                "flowsteer: the EAL did not start: {} ({}, errno {})\nflowsteer: {}",
                e.message(),
                e.op(),
                e.code(),
                eal_hint(e.code(), &args, user)
            );
            remove_runtime_dir(own_dir.as_deref(), &base, base_existed);
            return 1;
        }
        // The EAL's own path, where it differs from the one computed (it should not).
        let own_dir = own_dir.and(eal::runtime_dir());

        let mut failed = false;
        let ports = match ethdev::ports() {
            Ok(ports) => ports,
            Err(e) => {
                eprintln!("flowsteer: cannot list the ports: {e}");
                failed = true;
                Vec::new()
            }
        };
        let facts: Vec<PortFacts> = ports.iter().map(|&port| PortFacts::query(port)).collect();
        if ports.is_empty() && !failed {
            let _ = writeln!(stdout, "no DPDK ports: the EAL arguments create no device");
            if vdev_names(user).is_empty() {
                let _ = writeln!(
                    stdout,
                    "Name devices after `--`: --vdev=net_null0, \
                     --vdev=net_af_packet0,iface=eth0,qpairs=2, or -a <PCI address> for a NIC \
                     bound to vfio-pci (flowsteer ports --help)"
                );
            }
        } else if !ports.is_empty() {
            let _ = writeln!(
                stdout,
                "{} port{} (probed, not started: a virtual device reports its link down until \
                 it is started)",
                ports.len(),
                if ports.len() == 1 { "" } else { "s" }
            );
        }
        for port in &facts {
            failed |= port.errors() > 0;
            let _ = write!(stdout, "\n{}", port.render());
        }
        // A --vdev whose driver failed to probe it is only logged by the EAL, which goes on.
        for vdev in vdev_names(user) {
            if !facts.iter().any(|f| f.name.as_deref() == Ok(vdev)) {
                eprintln!(
                    "flowsteer: --vdev={vdev} made no port: the driver's message above says why"
                );
                failed = true;
            }
        }
        let _ = stdout.flush();

        for &port in &ports {
            // Never started, so no stop first.
            if let Err(e) = ethdev::close(port) {
                eprintln!("flowsteer: port {port}: {e}");
                failed = true;
            }
        }
        // SAFETY: this thread made no DPDK object that lives on (the ports are closed, no pool,
        // ring or hash was made) and no other thread of this process uses DPDK.
        if let Err(e) = unsafe { eal::cleanup() } {
            eprintln!("flowsteer: {e}");
            failed = true;
        }
        remove_runtime_dir(own_dir.as_deref(), &base, base_existed);
        u8::from(failed)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn facts(info: DevInfo, link: Link) -> PortFacts {
            PortFacts {
                port: 3,
                name: Ok("net_null0".to_owned()),
                info: Ok(info),
                mac: Ok([2, 0, 0, 0, 0, 0x0a]),
                socket: Ok(None),
                link: Ok(link),
                mtu: Ok(1500),
            }
        }

        #[test]
        fn a_port_without_rss_says_so_with_its_mask() {
            let info = DevInfo {
                driver_name: "net_null".to_owned(),
                max_rx_queues: 1024,
                max_tx_queues: 1024,
                min_mtu: 68,
                max_mtu: 65535,
                tx_offload_capa: 0x8000,
                rx_desc_lim: DescLimits {
                    max: 65535,
                    min: 0,
                    align: 1,
                    ..DescLimits::default()
                },
                ..DevInfo::default()
            };
            let link = Link {
                speed_mbps: 10_000,
                full_duplex: true,
                autoneg: false,
                up: true,
            };
            let text = facts(info, link).render();
            for expected in [
                "port 3: net_null0\n",
                "  driver         net_null\n",
                "  MAC address    02:00:00:00:00:0a\n",
                "  NUMA socket    any\n",
                "  link           up, speed 10 Gbps, full duplex, autoneg off\n",
                "  MTU            1500 (min 68, max 65535); max rx frame 0 bytes\n",
                "  rx queues      max 1024; descriptors per queue min 0, max 65535, multiple of 1\n",
                "  RSS            none (flow_type_rss_offloads 0x0)\n",
                "  RETA size      0\n",
                "  hash key size  0 bytes\n",
                "  rx offloads    none (0x0)\n",
                "  tx offloads    MULTI_SEGS (0x8000)\n",
            ] {
                assert!(text.contains(expected), "{expected:?} in\n{text}");
            }
        }

        #[test]
        fn rss_flow_types_are_named_and_wrapped_under_the_value_column() {
            let ipv4_tcp = rss::flow_types()
                .iter()
                .find(|(name, _)| *name == "ipv4-tcp")
                .expect("ipv4-tcp")
                .1;
            let all = rss::flow_types().iter().fold(0, |m, (_, bit)| m | bit);
            let info = DevInfo {
                flow_type_rss_offloads: all,
                reta_size: 128,
                hash_key_size: 40,
                ..DevInfo::default()
            };
            let text = facts(info, Link::default()).render();
            assert!(
                text.contains("  RSS            ipv4 ipv4-frag ipv4-tcp "),
                "{text}"
            );
            assert!(text.contains("  RETA size      128\n"), "{text}");
            assert!(text.contains("  hash key size  40 bytes\n"), "{text}");
            assert!(text.contains(&format!("(flow_type_rss_offloads {all:#x})")));
            assert_eq!(ipv4_tcp, 1 << 4, "RTE_ETH_RSS_NONFRAG_IPV4_TCP");
            for l in text.lines() {
                assert!(l.len() <= LINE_WIDTH, "{l:?}");
                assert!(!l.ends_with(' '), "{l:?}");
            }
            let continued = text
                .lines()
                .skip_while(|l| !l.starts_with("  RSS"))
                .nth(1)
                .expect("the flow types take more than one line");
            assert!(
                continued.starts_with(&" ".repeat(LABEL_WIDTH))
                    && !continued[LABEL_WIDTH..].starts_with(' '),
                "{continued:?}"
            );
            assert!(text.contains("link           down, speed None, half duplex, autoneg off"));
        }

        #[test]
        fn vdev_arguments_name_their_ports() {
            let user: Vec<String> = [
                "--vdev=net_af_packet0,iface=eth0,qpairs=2",
                "-a",
                "0000:01:00.0",
                "--vdev",
                "net_null1",
                "--vdevx=no",
                "--vdev=net_ring0",
            ]
            .map(String::from)
            .to_vec();
            assert_eq!(
                vdev_names(&user),
                ["net_af_packet0", "net_null1", "net_ring0"]
            );
        }

        #[test]
        fn an_eal_failure_gets_a_hint_for_its_cause() {
            let user = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
            let given = user(&["--socket-mem=64", "--vdev=net_null0"]);
            let args = crate::dpdk_ports::eal_args(&given, "warning");
            let hint = eal_hint(libc::ENOMEM, &args, &given);
            assert!(
                hint.starts_with("no huge pages, or too few") && hint.contains("drop --socket-mem"),
                "{hint}"
            );
            let plain = user(&["--vdev=net_null0"]);
            let args = crate::dpdk_ports::eal_args(&plain, "warning");
            assert!(eal_hint(libc::ENOMEM, &args, &plain).contains("-m <MB>"));
            assert!(eal_hint(libc::EINVAL, &args, &plain).contains("EAL argument"));
            assert!(eal_hint(libc::ENOTSUP, &args, &plain).contains("could not be probed"));
        }

        #[test]
        fn an_unreadable_answer_shows_its_error() {
            let mut f = facts(DevInfo::default(), Link::default());
            f.mtu = Err(ethdev::mtu(u16::MAX).expect_err("no EAL in unit tests"));
            assert_eq!(f.errors(), 1);
            assert!(f
                .render()
                .contains("  MTU            unreadable: rte_eth_dev_get_mtu: "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(user: &[&str]) -> String {
        let user: Vec<String> = user.iter().map(|a| a.to_string()).collect();
        eal_args_with(&user, "warning", 3, 42).join(" ")
    }

    #[test]
    fn the_defaults_come_first_and_the_user_arguments_last() {
        assert_eq!(
            args(&["--vdev=net_null0", "--vdev=net_ring0"]),
            "--no-huge --no-shconf --no-pci --no-telemetry -l 3 --file-prefix=flowsteer-ports-42 \
             --log-level=warning --vdev=net_null0 --vdev=net_ring0"
        );
        assert_eq!(
            args(&[]),
            "--no-huge --no-shconf --no-pci --no-telemetry -l 3 --file-prefix=flowsteer-ports-42 \
             --log-level=warning"
        );
    }

    #[test]
    fn a_default_gives_way_to_a_user_option_of_its_kind() {
        // Huge pages asked for: no --no-huge, and --in-memory instead of hugepage files.
        assert_eq!(
            args(&["--socket-mem=64"]),
            "--no-shconf --in-memory --no-pci --no-telemetry -l 3 \
             --file-prefix=flowsteer-ports-42 --log-level=warning --socket-mem=64"
        );
        assert_eq!(
            args(&["--in-memory"]),
            "--no-pci --no-telemetry -l 3 --file-prefix=flowsteer-ports-42 --log-level=warning \
             --in-memory"
        );
        assert_eq!(
            args(&["--huge-dir", "/mnt/huge", "--proc-type=secondary"]),
            "--no-pci --no-telemetry -l 3 --file-prefix=flowsteer-ports-42 --log-level=warning \
             --huge-dir /mnt/huge --proc-type=secondary"
        );
        // A PCI device, its cores, its prefix, telemetry.
        assert_eq!(
            args(&[
                "-a",
                "0000:01:00.0",
                "-l0-1",
                "--file-prefix=mine",
                "--telemetry",
                "--log-level=debug"
            ]),
            "--no-huge --no-shconf --log-level=warning -a 0000:01:00.0 -l0-1 \
             --file-prefix=mine --telemetry --log-level=debug"
        );
        assert_eq!(
            args(&["--lcores=2@3", "-b", "0000:02:00.0", "--no-huge"]),
            "--no-shconf --no-telemetry --file-prefix=flowsteer-ports-42 --log-level=warning \
             --lcores=2@3 -b 0000:02:00.0 --no-huge"
        );
    }

    #[test]
    fn an_option_is_recognised_in_its_forms_and_not_by_a_longer_name() {
        let user: Vec<String> = [
            "--vdev=net_null0",
            "-l0",
            "--huge-dir",
            "/x",
            "--in-memoryx",
        ]
        .map(String::from)
        .to_vec();
        assert!(gives(&user, "-l"));
        assert!(gives(&user, "--huge-dir"));
        assert!(
            !gives(&user, "--in-memory"),
            "--in-memoryx is another option"
        );
        assert!(!gives(&user, "--lcores"));
        assert!(!gives(&user, "-a"), "--vdev=... is no -a");
    }

    #[test]
    fn the_lcore_is_one_this_process_may_run_on() {
        let cpu = crate::pin::first_allowed_core().expect("an allowed CPU");
        let all = eal_args(&[], "notice");
        let at = all.iter().position(|a| a == "-l").expect("-l");
        assert_eq!(all[at + 1], cpu.to_string());
        assert!(all.contains(&format!(
            "--file-prefix=flowsteer-ports-{}",
            std::process::id()
        )));
        assert!(all.contains(&"--log-level=notice".to_owned()));
    }
}
