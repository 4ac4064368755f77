//! The DPDK EAL for a test binary: started once per process with arguments that touch nothing
//! outside it (no huge pages, no PCI, no shared configuration, no telemetry socket, one lcore, a
//! file prefix of the process's own), and only for root (see [`crate::need`]).
//!
//! The caller passes DPDK's init: this crate does not depend on `dpdk-sys`, so that the tests of
//! a crate without its `dpdk` feature need no DPDK to build.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Starts the EAL once for this process through `init` (given the arguments, it starts the EAL
/// and returns its runtime directory), with `vdevs` (`--vdev=` each) and a file prefix made of
/// `name` and the process id; every later call returns the first one's verdict. `false`: skip
/// the test (not root, outside CI). Panics when the EAL refuses to start: under root that is a
/// failure the test must report.
pub fn eal_ready(
    name: &str,
    vdevs: &[&str],
    init: impl FnOnce(Vec<String>) -> Result<Option<PathBuf>, String>,
) -> bool {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    if crate::skip_without_root() {
        return false;
    }
    let result = INIT.get_or_init(|| {
        let mut args: Vec<String> = [
            "--no-huge",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "-m",
            "256",
            "-l",
            "0",
            "--log-level=error",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--file-prefix={name}-{}", std::process::id()));
        args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
        // With --no-shconf the EAL leaves its runtime directory empty and never uses it again:
        // remove it so repeated runs do not pile directories up (harmless if not empty).
        if let Some(dir) = init(args)? {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("EAL initialisation failed: {e}");
    }
    true
}
