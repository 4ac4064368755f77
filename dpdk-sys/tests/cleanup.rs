//! The EAL's whole life in one process: the log stream set before `init`, the ports listed and
//! closed, `cleanup`, and no second `init`. A binary of its own, since `cleanup` ends the EAL
//! for the process. Needs root, as `tests/eal.rs`.
#![cfg(feature = "dpdk")]

use dpdk_sys::{eal, ethdev};

#[test]
fn the_eal_is_set_up_listed_closed_and_cleaned_up() {
    if flowsteer_testrig::skip_without_root() {
        return;
    }
    eal::log_to_stderr().expect("before init");
    let prefix = format!("dpdk-sys-cleanup-{}", std::process::id());
    eal::init([
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "64",
        "-l",
        "0",
        &format!("--file-prefix={prefix}"),
        "--vdev=net_null0",
        "--vdev=net_null1",
        "--log-level=error",
    ])
    .expect("EAL init");
    let dir = eal::runtime_dir().expect("a runtime directory");
    assert!(dir.ends_with(&prefix), "{}", dir.display());

    let ports = ethdev::ports().expect("ports");
    let names: Vec<String> = ports
        .iter()
        .map(|&p| ethdev::name(p).expect("name"))
        .collect();
    assert_eq!(names, ["net_null0", "net_null1"]);
    for &port in &ports {
        ethdev::close(port).expect("close a probed, never started port");
    }
    assert!(
        ethdev::ports().expect("ports").is_empty(),
        "closed ports are gone"
    );

    // SAFETY: no DPDK object of this process outlives the call; this is its only thread using
    // DPDK.
    unsafe { eal::cleanup() }.expect("cleanup");
    assert!(!eal::is_initialized());
    assert!(ethdev::ports().is_err(), "no ethdev call after cleanup");
    let again = eal::init(["--no-huge"]).expect_err("no second init");
    assert!(again.message().contains("cleaned up"), "{again}");
    // SAFETY: as above; the EAL is gone, so the call is refused before reaching DPDK.
    assert!(unsafe { eal::cleanup() }.is_err());

    // --no-shconf and --no-telemetry: the EAL left its directory empty.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("the runtime directory stays")
        .collect();
    assert!(left.is_empty(), "{left:?} in {}", dir.display());
    std::fs::remove_dir(&dir).expect("remove the runtime directory");
}
