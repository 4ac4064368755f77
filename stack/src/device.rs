//! The smoltcp device of one stack thread: it reads the frames of one processing round (the
//! thread's received burst plus what it drained from its software queue) and writes what the
//! stack emits into the thread's transmit burst, in pool buffers.
//!
//! A device lives for one `Interface::poll`: it borrows the round's frames, the transmit burst
//! and the thread's pool cache, so no frame is copied on receive and each emitted frame is written
//! once, straight into the buffer the NIC sends. Cost per frame: receive = none beyond smoltcp's
//! own parsing; transmit = one buffer from the thread's cache.

use flowsteer_nic::pool::{PktBuf, PoolCache};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// What one round of the device did, for the thread's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeviceCounts {
    pub frames_in: u64,
    pub frames_out: u64,
    pub tx_no_buffer: u64,
}

/// The device of one processing round.
pub(crate) struct BurstDevice<'a> {
    rx: &'a [PktBuf],
    next_rx: usize,
    tx: &'a mut Vec<PktBuf>,
    /// Frames beyond this many in `tx` wait for the next round: smoltcp keeps them queued in
    /// its sockets, so a round's transmit burst stays bounded.
    tx_limit: usize,
    cache: &'a mut PoolCache,
    /// Where a frame goes when the pool has no buffer: smoltcp must be handed a buffer to write,
    /// the frame is then dropped and counted (TCP retransmits it).
    scratch: &'a mut Vec<u8>,
    max_frame: usize,
    counts: DeviceCounts,
}

impl<'a> BurstDevice<'a> {
    pub(crate) fn new(
        rx: &'a [PktBuf],
        tx: &'a mut Vec<PktBuf>,
        tx_limit: usize,
        cache: &'a mut PoolCache,
        scratch: &'a mut Vec<u8>,
        max_frame: usize,
    ) -> Self {
        BurstDevice {
            rx,
            next_rx: 0,
            tx,
            tx_limit,
            cache,
            scratch,
            max_frame,
            counts: DeviceCounts::default(),
        }
    }

    /// Capabilities without a device: what `Interface::new` needs to know.
    pub(crate) fn capabilities_for(max_frame: usize) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // For an Ethernet medium smoltcp's MTU counts the Ethernet header.
        caps.max_transmission_unit = max_frame;
        caps
    }

    pub(crate) fn counts(&self) -> DeviceCounts {
        self.counts
    }

    fn tx_token(&mut self) -> BurstTxToken<'_> {
        BurstTxToken {
            tx: &mut *self.tx,
            cache: &mut *self.cache,
            scratch: &mut *self.scratch,
            max_frame: self.max_frame,
            counts: &mut self.counts,
        }
    }
}

impl<'a> phy::Device for BurstDevice<'a> {
    type RxToken<'t>
        = BurstRxToken<'t>
    where
        Self: 't;
    type TxToken<'t>
        = BurstTxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, _timestamp: Instant) -> Option<(BurstRxToken<'_>, BurstTxToken<'_>)> {
        let rx: &'a [PktBuf] = self.rx;
        let frame = rx.get(self.next_rx)?.data();
        self.next_rx += 1;
        self.counts.frames_in += 1;
        Some((BurstRxToken { frame }, self.tx_token()))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<BurstTxToken<'_>> {
        if self.tx.len() >= self.tx_limit {
            return None;
        }
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        Self::capabilities_for(self.max_frame)
    }
}

/// One received frame, borrowed from the round's burst.
pub(crate) struct BurstRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for BurstRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// The right to append one frame to the round's transmit burst.
pub(crate) struct BurstTxToken<'a> {
    tx: &'a mut Vec<PktBuf>,
    cache: &'a mut PoolCache,
    scratch: &'a mut Vec<u8>,
    max_frame: usize,
    counts: &'a mut DeviceCounts,
}

impl phy::TxToken for BurstTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if len <= self.max_frame {
            if let Some(mut buf) = self.cache.alloc() {
                if buf.set_len(len).is_ok() {
                    let result = f(buf.data_mut());
                    self.tx.push(buf);
                    self.counts.frames_out += 1;
                    return result;
                }
                self.cache.free(buf);
            }
        }
        // No buffer (or a frame larger than the data room, which the MTU rules out): smoltcp
        // still writes the frame, into scratch, and it is dropped here.
        self.counts.tx_no_buffer += 1;
        self.scratch.clear();
        self.scratch.resize(len, 0);
        f(self.scratch)
    }
}

/// A device that only reports capabilities: what `Interface::new` is given, before any round.
pub(crate) struct CapabilitiesOnly {
    max_frame: usize,
}

impl CapabilitiesOnly {
    pub(crate) fn new(max_frame: usize) -> Self {
        CapabilitiesOnly { max_frame }
    }
}

impl phy::Device for CapabilitiesOnly {
    type RxToken<'t>
        = BurstRxToken<'t>
    where
        Self: 't;
    type TxToken<'t>
        = BurstTxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, _timestamp: Instant) -> Option<(BurstRxToken<'_>, BurstTxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<BurstTxToken<'_>> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        BurstDevice::capabilities_for(self.max_frame)
    }
}
