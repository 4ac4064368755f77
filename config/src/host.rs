//! What can be checked of a configuration against this host without opening anything: for
//! `port.driver = "afpacket"`, that `port.interface` exists, is up, and that a frame of its MTU
//! fits a packet buffer. It reads `/sys/class/net/<interface>/` (`flags`, `operstate`, `mtu`),
//! which needs no privilege, so `flowsteer check` says what `flowsteer run` would find before
//! any socket is opened. For `port.driver = "pcap"`, that `port.pcap_file` can be opened for
//! reading (opening a file reads nothing of it).
//!
//! "Up" means administratively up (`IFF_UP` in `flags`, what `ip link set IF up` sets); a link
//! without carrier (a veth whose peer is down, operstate `lowerlayerdown`) is accepted, since
//! its carrier may come after the start. The loopback interface exists and is up, but its MTU
//! of 65536 never fits a buffer (`pool.data_room` is at most 9216): it is refused by the MTU rule.

use std::path::Path;

use crate::error::Collector;
use crate::validate::MAX_DATA_ROOM;
use crate::{Config, Driver};

/// The Ethernet header a frame carries on top of the MTU's payload.
pub(crate) const ETHERNET_HEADER: u32 = 14;
/// `IFF_UP` of `<linux/if.h>`.
const IFF_UP: u32 = 0x1;

/// Checks `config` against the interfaces under `sys_class_net` (`/sys/class/net`).
pub(crate) fn check(config: &Config, sys_class_net: &Path, out: &mut Collector) {
    let port = &config.port;
    if port.driver == Driver::Pcap {
        check_capture_file(&port.pcap_file, out);
        return;
    }
    if port.driver != Driver::AfPacket || port.interface.is_empty() {
        return;
    }
    if !sys_class_net.is_dir() {
        return; // no sysfs here (not Linux, or not mounted): opening the port will tell
    }
    let name = &port.interface;
    let shown = crate::validate::quoted(name);
    let dir = sys_class_net.join(name);
    if !dir.exists() {
        out.reject(
            "port.interface",
            format!(
                "must be a network interface of this host (see `ip link`), got {shown}: no such \
                 interface ({} does not exist)",
                dir.display()
            ),
        );
        return;
    }
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).map(|s| s.trim().to_owned());
    let flags = read("flags")
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    let operstate = read("operstate").unwrap_or_else(|_| "unknown".into());
    if let Some(flags) = flags {
        if flags & IFF_UP == 0 {
            out.reject(
                "port.interface",
                format!(
                    "must be up (`ip link set {name} up`), got {shown}: the interface is down \
                     (flags {flags:#x}, operstate {operstate})"
                ),
            );
        }
    }
    let Some(mtu) = read("mtu").ok().and_then(|m| m.parse::<u32>().ok()) else {
        return;
    };
    let frame = u64::from(mtu) + u64::from(ETHERNET_HEADER);
    if frame > u64::from(config.pool.data_room) && !out.is_rejected("pool.data_room") {
        let remedy = if frame > u64::from(MAX_DATA_ROOM) {
            format!(
                "; pool.data_room is at most {MAX_DATA_ROOM}: lower the interface's MTU to at \
                 most {} (`ip link set {name} mtu N`) or use another interface",
                MAX_DATA_ROOM - ETHERNET_HEADER as u16
            )
        } else {
            String::new()
        };
        out.reject(
            "pool.data_room",
            format!(
                "must hold a frame of port.interface {shown} (MTU {mtu} + {ETHERNET_HEADER} bytes \
                 of Ethernet header = {frame}), got {}{remedy}",
                config.pool.data_room
            ),
        );
    }
}

/// With `port.driver = "pcap"`: the capture file can be opened for reading (its content is the
/// port's to judge when it opens it).
fn check_capture_file(path: &str, out: &mut Collector) {
    if path.is_empty() || out.is_rejected("port.pcap_file") {
        return; // validation named the key already
    }
    let shown = crate::validate::quoted(path);
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some("it is a directory".to_owned()),
        Ok(_) => std::fs::File::open(path).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(problem) = problem {
        out.reject(
            "port.pcap_file",
            format!("must be a readable capture file, got {shown}: {problem}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fake `/sys/class/net` with one interface of these `flags`, `operstate` and `mtu`.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(tag: &str, name: &str, flags: &str, operstate: &str, mtu: &str) -> FakeSys {
            let root = std::env::temp_dir()
                .join(format!("flowsteer-config-sys-{}-{tag}", std::process::id()));
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in [("flags", flags), ("operstate", operstate), ("mtu", mtu)] {
                std::fs::write(dir.join(file), format!("{text}\n")).unwrap();
            }
            FakeSys(root)
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn afpacket(interface: &str) -> Config {
        let mut config = Config::default();
        config.port.driver = Driver::AfPacket;
        config.port.interface = interface.into();
        config.traffic.profile = crate::Profile::None;
        config
    }

    fn problems(config: &Config, sys: &Path) -> Vec<String> {
        match config.check_host_at(sys) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn an_interface_that_is_up_with_a_fitting_mtu_passes() {
        let sys = FakeSys::new("ok", "fs0", "0x1003", "up", "1500");
        assert_eq!(problems(&afpacket("fs0"), &sys.0), Vec::<String>::new());
        // No carrier yet is fine: administratively up is what counts.
        let sys = FakeSys::new("nocarrier", "fs0", "0x1003", "lowerlayerdown", "1500");
        assert_eq!(problems(&afpacket("fs0"), &sys.0), Vec::<String>::new());
        // 2034 + 14 = 2048, the default data room, fits exactly.
        let sys = FakeSys::new("exact", "fs0", "0x1003", "up", "2034");
        assert_eq!(problems(&afpacket("fs0"), &sys.0), Vec::<String>::new());
    }

    #[test]
    fn a_missing_interface_is_named() {
        let sys = FakeSys::new("missing", "fs0", "0x1003", "up", "1500");
        let got = problems(&afpacket("fs9"), &sys.0);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with(
                "port.interface: must be a network interface of this host (see `ip link`), \
                 got \"fs9\": no such interface"
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn a_down_interface_is_refused() {
        let sys = FakeSys::new("down", "fs0", "0x1002", "down", "1500");
        assert_eq!(
            problems(&afpacket("fs0"), &sys.0),
            vec![
                "port.interface: must be up (`ip link set fs0 up`), got \"fs0\": the interface \
                 is down (flags 0x1002, operstate down)"
            ]
        );
    }

    #[test]
    fn an_mtu_beyond_the_data_room_names_pool_data_room() {
        let sys = FakeSys::new("mtu", "fs0", "0x1003", "up", "2035");
        assert_eq!(
            problems(&afpacket("fs0"), &sys.0),
            vec![
                "pool.data_room: must hold a frame of port.interface \"fs0\" (MTU 2035 + 14 \
                 bytes of Ethernet header = 2049), got 2048"
            ]
        );
        let mut config = afpacket("fs0");
        config.pool.data_room = 4096;
        assert_eq!(problems(&config, &sys.0), Vec::<String>::new());
        // An MTU no data room can hold says what to change instead.
        let sys = FakeSys::new("jumbo", "fs0", "0x1003", "up", "65536");
        let got = problems(&afpacket("fs0"), &sys.0);
        assert!(
            got[0].ends_with(
                "pool.data_room is at most 9216: lower the interface's MTU to at \
                 most 9202 (`ip link set fs0 mtu N`) or use another interface"
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn uveth_and_a_host_without_sysfs_are_not_checked() {
        let mut config = afpacket("fs9");
        let sys = FakeSys::new("uveth", "fs0", "0x1003", "up", "1500");
        config.port.driver = Driver::Uveth;
        config.port.interface.clear();
        assert_eq!(problems(&config, &sys.0), Vec::<String>::new());
        let nowhere = sys.0.join("no-sysfs-here");
        assert_eq!(problems(&afpacket("fs9"), &nowhere), Vec::<String>::new());
    }
}
