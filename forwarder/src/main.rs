//! The `flowsteer` command line: `run`, `check` and `ports`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flowsteer_config::{Config, Problem};
use forwarder::engine::{self, Engine, RunOptions};

#[derive(Parser)]
#[command(
    name = "flowsteer",
    version,
    about = "Distributed software forwarding for user-space network stacks",
    after_help = "Exit codes: 0 success, 1 run failure (a DPDK EAL or device failure among \
                  them), 2 invalid configuration or arguments (or an afpacket interface that is \
                  missing, down or of too large an MTU, or a DPDK device that is missing or does \
                  not take port.queues, the descriptors, port.reta_size or port.rss_key, or a \
                  port.pcap_file that cannot be read as a capture), \
                  3 conservation check failed. SIGINT, SIGTERM and SIGHUP stop a run gracefully."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (without --config: the built-in default, uveth and the traffic generator).
    Run {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop after this many seconds (default: run until SIGINT, SIGTERM or SIGHUP; each
        /// stops gracefully: final table, report, conservation check). With port.driver =
        /// "pcap" the run also stops by itself once the capture is replayed and processed.
        #[arg(long, allow_negative_numbers = true)]
        duration: Option<f64>,
        /// Write every counter, per thread and in total, to this JSON file at the end.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective configuration (with an afpacket port,
    /// also check that the interface exists, is up and that its MTU fits pool.data_room).
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// List the DPDK ports an EAL command line creates (needs a build with `--features dpdk`).
    ///
    /// Each port as testpmd's `show port info` prints it: driver, MAC, link, MTU, queue and
    /// descriptor limits, RSS flow types, RETA and key size, offloads.
    #[command(after_help = PORTS_HELP)]
    Ports {
        /// The EAL's log level, on stderr (the EAL's own messages).
        #[arg(long, value_name = "LEVEL", default_value = "warning",
              value_parser = clap::builder::PossibleValuesParser::new(forwarder::dpdk_ports::LOG_LEVELS))]
        log_level: String,
        /// EAL arguments, after `--`: `--vdev=...` and `-a PCI` select the devices.
        #[arg(last = true, value_name = "EAL ARGS")]
        eal: Vec<String>,
    },
}

const PORTS_HELP: &str = "\
Devices: --vdev=<driver><n>[,key=value...] makes a virtual one (net_null0, net_ring0,
net_tap0, net_af_packet0,iface=eth0,qpairs=2); -a <PCI address> probes a NIC bound to vfio-pci.
Example: flowsteer ports -- --vdev=net_null0 --vdev=net_af_packet0,iface=eth0,qpairs=2

flowsteer puts its defaults before the EAL ARGS, each left out when they hold an option of its
kind: --no-huge (left out for --in-memory, --socket-mem, --socket-limit, --huge-dir,
--huge-unlink, --huge-worker-stack, --match-allocations, which ask for huge pages; then
--in-memory is added, unless --proc-type or --legacy-mem), --no-shconf (for --in-memory,
--proc-type), --no-pci (for -a/--allow, -b/--block), --no-telemetry (for --telemetry),
-l <first CPU allowed> (for -l, -c, --lcores), --file-prefix=flowsteer-ports-<pid> (for
--file-prefix), --log-level=<LEVEL> (a later --log-level in the EAL ARGS applies after it).
The first line printed shows them all. With the defaults the run leaves nothing in
/var/run/dpdk.

Exit codes: 0 listed (also when there is no port), 1 the EAL failed (DPDK's text and what to
do on stderr), a --vdev made no port or a port could not be read, 2 bad arguments or a build
without the dpdk feature.";

/// The configuration in `path`, or the built-in default, checked against this host (the
/// afpacket interface exists, is up, its MTU fits); the error is the message to print.
fn load(path: Option<&PathBuf>) -> Result<Config, String> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let config = Config::load(path).map_err(|e| {
        let unreadable = e
            .problems()
            .iter()
            .any(|p| matches!(p, Problem::Read { .. }));
        if unreadable {
            format!("flowsteer: {e}") // the problem names the file already
        } else {
            format!("flowsteer: invalid configuration {}:\n{e}", path.display())
        }
    })?;
    config.check_host().map_err(|e| {
        format!(
            "flowsteer: configuration {} does not fit this host:\n{e}",
            path.display()
        )
    })?;
    Ok(config)
}

/// On SIGHUP the terminal is gone and writing to it fails (EIO), which would make the next
/// status line or message panic: each standard stream that is a terminal is pointed at
/// /dev/null as the signal arrives, before the run stops. Streams that are pipes or files are
/// left alone, so the final table still reaches them.
fn silence_the_terminal_on_hangup() -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: isatty only inspects the descriptor.
    let (out, err) = unsafe { (libc::isatty(1) == 1, libc::isatty(2) == 1) };
    if !out && !err {
        return Ok(());
    }
    // Kept open for the life of the process: the handler may use it at any time.
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")?
        .into_raw_fd();
    // SAFETY: the action only calls dup2, which is async-signal-safe, on descriptors that stay
    // open; it allocates nothing and takes no lock.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGHUP, move || {
            if out {
                libc::dup2(null, 1);
            }
            if err {
                libc::dup2(null, 2);
            }
        })?;
    }
    Ok(())
}

/// The warning printed at start when the metrics endpoint listens beyond loopback.
fn exposure_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "flowsteer: warning: the metrics endpoint listens on {addr} (metrics.listen), \
             reachable from other hosts; it has no authentication"
        )
    })
}

/// `flowsteer ports`: the listing, or in a build without DPDK, how to make one with it.
#[cfg(feature = "dpdk")]
fn ports(eal: &[String], log_level: &str) -> ExitCode {
    ExitCode::from(forwarder::dpdk_ports::list(eal, log_level))
}

#[cfg(not(feature = "dpdk"))]
fn ports(_eal: &[String], _log_level: &str) -> ExitCode {
    eprintln!("{}", forwarder::dpdk_ports::NEEDS_DPDK);
    ExitCode::from(2)
}

/// A configuration this build cannot run: a DPDK port without the `dpdk` feature.
fn needs_dpdk(cfg: &Config) -> bool {
    cfg.port.driver == flowsteer_config::Driver::Dpdk && !cfg!(feature = "dpdk")
}

/// Ends the EAL if a DPDK port started it (nothing otherwise, and in a build without DPDK).
fn end_dpdk() {
    #[cfg(feature = "dpdk")]
    forwarder::dpdk_ports::end_eal();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ports { log_level, eal } => ports(&eal, &log_level),
        Command::Check { config } => match load(Some(&config)) {
            Ok(cfg) if needs_dpdk(&cfg) => {
                eprintln!("flowsteer: {}", forwarder::ports::NEEDS_DPDK_DRIVER);
                ExitCode::from(2)
            }
            Ok(cfg) => {
                print!("{}", cfg.to_toml_string());
                if cfg.port.driver == flowsteer_config::Driver::Dpdk {
                    print!("\n{}", forwarder::ports::dpdk_check_notes(&cfg));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            duration,
            report,
        } => {
            let cfg = match load(config.as_ref()) {
                Ok(cfg) if needs_dpdk(&cfg) => {
                    eprintln!("flowsteer: {}", forwarder::ports::NEEDS_DPDK_DRIVER);
                    return ExitCode::from(2);
                }
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let duration = match duration {
                None => None,
                Some(s) if s.is_finite() && s > 0.0 && s <= 31_536_000.0 => {
                    Some(Duration::from_secs_f64(s))
                }
                Some(s) => {
                    eprintln!("flowsteer: --duration: must be a number of seconds in (0, 31536000], got {s}");
                    return ExitCode::from(2);
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            // A closed terminal (SIGHUP) stops the run like Ctrl-C: the final table, the report
            // and the conservation check still happen. Its streams are silenced first.
            if let Err(e) = silence_the_terminal_on_hangup() {
                eprintln!("flowsteer: cannot install the signal handler: {e}");
                return ExitCode::FAILURE;
            }
            for signal in [
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ] {
                if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                    eprintln!("flowsteer: cannot install the signal handler: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let apps = if cfg.stack.app.is_empty() {
                String::from("none")
            } else {
                cfg.stack
                    .app
                    .iter()
                    .map(|app| format!("{}:{}", app.kind, app.port))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let opts = RunOptions {
                duration,
                stop,
                status_lines: true,
                serve_metrics: true,
            };
            let engine = match Engine::start(&cfg, opts.serve_metrics) {
                Ok(engine) => engine,
                Err(e) => {
                    eprintln!("flowsteer: {e}");
                    end_dpdk();
                    return match e {
                        // A configuration the device cannot run, like one the host cannot.
                        engine::EngineError::Device(_) => ExitCode::from(2),
                        _ => ExitCode::FAILURE,
                    };
                }
            };
            // The address actually bound: with port 0 the system chose it.
            let metrics = match engine.metrics_addr() {
                Some(addr) => format!("http://{addr}/metrics"),
                None => "off".to_string(),
            };
            eprintln!(
                "flowsteer: {} thread{}, {} {} queue{}, balance {}, profile {}, apps {apps}, metrics {metrics}",
                cfg.engine.threads,
                if cfg.engine.threads == 1 { "" } else { "s" },
                cfg.port.queues,
                cfg.port.driver,
                if cfg.port.queues == 1 { "" } else { "s" },
                cfg.engine.balance,
                cfg.traffic.profile,
            );
            if matches!(
                cfg.port.driver,
                flowsteer_config::Driver::Dpdk | flowsteer_config::Driver::Pcap
            ) {
                // What the device does with RSS and checksums, or what the capture holds, which
                // the configuration alone does not say.
                eprintln!("flowsteer: port: {}", engine.shared().port.describe());
            }
            if let Some(warning) = engine.metrics_addr().and_then(exposure_warning) {
                eprintln!("{warning}");
            }
            let outcome = engine::drive(engine, opts);
            // The port is stopped and the threads are gone: DPDK is no longer in use.
            end_dpdk();
            match outcome {
                Ok(run) => {
                    // The terminal may be gone (SIGHUP): a failed write must not stop the
                    // report and the conservation check.
                    let _ = write!(std::io::stdout(), "{}", run.render_table());
                    let _ = std::io::stdout().flush();
                    if let Some(path) = report {
                        let written = serde_json::to_string_pretty(&run)
                            .map_err(std::io::Error::other)
                            .and_then(|json| std::fs::write(&path, json + "\n"));
                        if let Err(e) = written {
                            eprintln!(
                                "flowsteer: cannot write the report to {}: {e}",
                                path.display()
                            );
                            return ExitCode::FAILURE;
                        }
                    }
                    if run.conservation.ok {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("flowsteer: conservation check failed");
                        ExitCode::from(3)
                    }
                }
                Err(e) => {
                    eprintln!("flowsteer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exposure_warning;

    #[test]
    fn a_metrics_address_beyond_loopback_is_warned_about() {
        for loopback in ["127.0.0.1:9464", "127.0.0.2:1", "[::1]:9464"] {
            assert_eq!(
                exposure_warning(loopback.parse().unwrap()),
                None,
                "{loopback}"
            );
        }
        for exposed in ["0.0.0.0:9464", "198.18.0.1:9464", "[::]:9464"] {
            let warning = exposure_warning(exposed.parse().unwrap()).expect(exposed);
            assert!(
                warning.starts_with(&format!(
                    "flowsteer: warning: the metrics endpoint listens on {exposed} (metrics.listen)"
                )),
                "{warning}"
            );
        }
    }
}
