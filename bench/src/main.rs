//! `flowsteer-bench`: runs experiments side by side with their competitors and prints one table
//! each, with a ratio column (ours over the competitor, above 1 = ours faster).
//!
//! Experiments (one module each):
//! - `flowtable`: `lookup_bulk` of 32 IPv4 keys, flowsteer's table against the DashMap baseline,
//!   papaya and rte_hash;
//! - `swq`: burst enqueue/dequeue, flowsteer's ring against the crossbeam baseline and rte_ring
//!   MP/SC;
//! - `softrss`: the Toeplitz hash per packet against `rte_softrss`;
//! - `pool`: packet buffers allocated and freed in bursts, on one thread and handed from one
//!   thread to another, flowsteer's pool and per-thread cache against rte_mempool (a user-owned
//!   cache, and the mbuf API on an lcore's cache);
//! - `engine`: RSS and software balancing per traffic profile, and the ltran-style baseline;
//! - `memory`: what a random cache line costs on this machine, by working set (no competitor:
//!   the yardstick of the flow table rows);
//! - `dpdk-peers`: software balancing against DPDK's rte_distributor and eventdev on
//!   `listeners` (needs `--features dpdk`; not part of `all`);
//! - `all`: the six before `dpdk-peers`, `memory` first.
//!
//! DPDK competitors run only when built with `--features dpdk` and when the EAL starts; every
//! table says which competitor did not run and why.

use std::process::ExitCode;

mod competitors;
mod dpdk_peers;
mod engine;
mod flow_table;
mod generated;
mod ltran;
mod measure;
mod memory;
mod pool;
mod softrss;
mod swq;
mod table;
mod window;

/// Options shared by every experiment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Wall time of one measured point (micro-benchmarks: split over the repetitions; engine
    /// and ltran-style baseline: the measured window of each of their runs, after a warm-up).
    pub seconds: f64,
    /// Stack threads of the engine runs; reader threads and producers are fixed by the issue's
    /// matrix (1 and 2).
    pub threads: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 1.0,
            threads: 2,
        }
    }
}

const USAGE: &str = "\
usage: flowsteer-bench <experiment> [--seconds S] [--threads N]

experiments:
  flowtable   lookup_bulk of 32 IPv4 keys: flowsteer's table, dashmap, papaya and rte_hash
  swq         software queue burst enqueue/dequeue: flowsteer's ring, crossbeam and rte_ring MP/SC
  softrss     Toeplitz hash per packet against rte_softrss
  pool        buffer pool alloc/free bursts, one thread and handed off: flowsteer's pool and rte_mempool
  engine      RSS and software balancing per traffic profile, and the ltran-style baseline
  memory      a random cache line's latency and burst throughput, by working set
  dpdk-peers  software balancing against rte_distributor and eventdev on listeners (--features dpdk)
  all         all of the above but dpdk-peers, memory first

options:
  --seconds S   wall time of each measured point, 0.05..=3600 (default 1)
  --threads N   stack threads of the engine runs, 1..=64 (default 2)";

/// The experiment and options named on the command line.
#[derive(Debug, PartialEq)]
struct Invocation {
    experiment: Experiment,
    options: Options,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Experiment {
    FlowTable,
    Swq,
    SoftRss,
    Pool,
    Engine,
    Memory,
    DpdkPeers,
    All,
}

impl Experiment {
    /// The experiments this one runs, in order: `all` runs every one, `memory` first.
    fn expand(self) -> Vec<Experiment> {
        match self {
            Experiment::All => vec![
                Experiment::Memory,
                Experiment::FlowTable,
                Experiment::Swq,
                Experiment::SoftRss,
                Experiment::Pool,
                Experiment::Engine,
            ],
            one => vec![one],
        }
    }
}

fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut experiment = None;
    let mut options = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" | "--threads" => {
                let value = rest.next().ok_or_else(|| format!("{arg}: missing value"))?;
                if arg == "--seconds" {
                    options.seconds = match value.parse::<f64>() {
                        Ok(s) if (0.05..=3600.0).contains(&s) => s,
                        _ => {
                            return Err(format!(
                                "--seconds: must be a number of seconds 0.05..=3600, got {value:?}"
                            ))
                        }
                    };
                } else {
                    options.threads = match value.parse::<u16>() {
                        Ok(n) if (1..=64).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "--threads: must be an integer 1..=64, got {value:?}"
                            ))
                        }
                    };
                }
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            name => {
                if experiment.is_some() {
                    return Err(format!(
                        "only one experiment may be named, got a second: {name:?}"
                    ));
                }
                experiment = Some(match name {
                    "flowtable" => Experiment::FlowTable,
                    "swq" => Experiment::Swq,
                    "softrss" => Experiment::SoftRss,
                    "pool" => Experiment::Pool,
                    "engine" => Experiment::Engine,
                    "memory" => Experiment::Memory,
                    "dpdk-peers" => Experiment::DpdkPeers,
                    "all" => Experiment::All,
                    other => {
                        return Err(format!(
                        "unknown experiment {other:?}: expected flowtable, swq, softrss, pool, engine, memory, dpdk-peers or all"
                    ))
                    }
                });
            }
        }
    }
    let experiment = experiment.ok_or("no experiment named")?;
    Ok(Invocation {
        experiment,
        options,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let invocation = match parse_args(&args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("flowsteer-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let opts = invocation.options;
    let experiments = invocation.experiment.expand();
    let mut ok = true;
    for experiment in experiments {
        let result = match experiment {
            Experiment::FlowTable => flow_table::run(&opts),
            Experiment::Swq => swq::run(&opts),
            Experiment::SoftRss => softrss::run(&opts),
            Experiment::Pool => pool::run(&opts),
            Experiment::Memory => memory::run(&opts),
            Experiment::DpdkPeers => dpdk_peers::run(&opts),
            Experiment::Engine | Experiment::All => engine::run(&opts),
        };
        if let Err(e) = result {
            eprintln!("flowsteer-bench: {experiment:?}: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn experiment_and_options_parse() {
        let inv = parse_args(&args(&["swq", "--seconds", "0.5", "--threads", "4"])).unwrap();
        assert_eq!(inv.experiment, Experiment::Swq);
        assert_eq!(inv.options.seconds, 0.5);
        assert_eq!(inv.options.threads, 4);
        let inv = parse_args(&args(&["memory"])).unwrap();
        assert_eq!(inv.experiment, Experiment::Memory);
        let inv = parse_args(&args(&["--seconds", "2", "all"])).unwrap();
        assert_eq!(inv.experiment, Experiment::All);
        assert_eq!(inv.options.threads, 2);
    }

    #[test]
    fn pool_parses_and_runs_in_all_before_the_engine() {
        let inv = parse_args(&args(&["pool", "--seconds", "0.2"])).unwrap();
        assert_eq!(inv.experiment, Experiment::Pool);
        assert_eq!(inv.options.seconds, 0.2);
        assert_eq!(Experiment::Pool.expand(), vec![Experiment::Pool]);
        assert_eq!(
            Experiment::All.expand(),
            vec![
                Experiment::Memory,
                Experiment::FlowTable,
                Experiment::Swq,
                Experiment::SoftRss,
                Experiment::Pool,
                Experiment::Engine,
            ]
        );
        assert!(USAGE.contains("\n  pool "));
        assert!(parse_args(&args(&["nope"]))
            .unwrap_err()
            .contains("softrss, pool, engine"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = |a: &[&str]| parse_args(&args(a)).unwrap_err();
        assert_eq!(err(&[]), "no experiment named");
        assert!(err(&["nope"]).contains("unknown experiment \"nope\""));
        assert!(err(&["swq", "flowtable"]).contains("only one experiment"));
        assert_eq!(err(&["swq", "--seconds"]), "--seconds: missing value");
        assert!(err(&["swq", "--seconds", "0"]).contains("0.05..=3600"));
        assert!(err(&["swq", "--seconds", "x"]).contains("got \"x\""));
        assert!(err(&["swq", "--threads", "0"]).contains("1..=64"));
        assert!(err(&["swq", "--threads", "1.5"]).contains("1..=64"));
        assert!(err(&["swq", "--fast"]).contains("unknown option \"--fast\""));
    }
}
