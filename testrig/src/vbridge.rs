//! smoltcp's view of a vbridge peer port, for client hosts that need no kernel.

use std::net::Ipv4Addr;

use flowsteer_nic::vbridge::PeerPort;
use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

/// A smoltcp device on a bridge port: one `RxToken` per delivered frame, one `send` per
/// transmitted frame (a refused send is a lost frame, which TCP recovers from and a UDP check
/// would report).
pub struct PeerDevice {
    pub port: PeerPort,
}

pub struct PeerRx(Vec<u8>);

pub struct PeerTx<'a>(&'a PeerPort);

impl PeerDevice {
    pub fn new(port: PeerPort) -> PeerDevice {
        PeerDevice { port }
    }

    /// An Ethernet interface on this device with link address `mac`, the one address
    /// `ip/prefix_len`, and `seed` for smoltcp's choices (initial sequence numbers, ports).
    pub fn interface(
        &mut self,
        mac: [u8; 6],
        ip: Ipv4Addr,
        prefix_len: u8,
        seed: u64,
    ) -> Interface {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, self, Instant::now());
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(ip), prefix_len))
                .expect("an interface holds one address");
        });
        iface
    }
}

impl RxToken for PeerRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for PeerTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        let _ = self.0.send(&frame);
        result
    }
}

impl Device for PeerDevice {
    type RxToken<'a> = PeerRx;
    type TxToken<'a> = PeerTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(PeerRx, PeerTx<'_>)> {
        let frame = self.port.recv()?;
        Some((PeerRx(frame), PeerTx(&self.port)))
    }

    fn transmit(&mut self, _: Instant) -> Option<PeerTx<'_>> {
        Some(PeerTx(&self.port))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}
