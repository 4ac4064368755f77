//! A wire in memory between smoltcp clients and a server the test drives by hand: the clients'
//! interface polls a [`ClientDevice`] over the [`Wire`]; the test moves `to_server` frames into
//! the server and the server's answers into `to_client`. No threads, no clock of its own.

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames in flight from the clients to the server and back, oldest first.
#[derive(Default, Debug)]
pub struct Wire {
    /// Sent by the clients, not yet given to the server.
    pub to_server: VecDeque<Vec<u8>>,
    /// Sent by the server, not yet received by the clients.
    pub to_client: VecDeque<Vec<u8>>,
}

/// The clients' half of a [`Wire`]: an Ethernet device of MTU 1500.
pub struct ClientDevice<'a>(pub &'a mut Wire);

/// A frame the clients receive.
pub struct ClientRx(Vec<u8>);

/// Room for a frame the clients send.
pub struct ClientTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for ClientRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for ClientTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl phy::Device for ClientDevice<'_> {
    type RxToken<'t>
        = ClientRx
    where
        Self: 't;
    type TxToken<'t>
        = ClientTx<'t>
    where
        Self: 't;

    fn receive(&mut self, _: Instant) -> Option<(ClientRx, ClientTx<'_>)> {
        let frame = self.0.to_client.pop_front()?;
        Some((ClientRx(frame), ClientTx(&mut self.0.to_server)))
    }

    fn transmit(&mut self, _: Instant) -> Option<ClientTx<'_>> {
        Some(ClientTx(&mut self.0.to_server))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}
