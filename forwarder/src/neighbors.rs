//! The neighbours the engine has heard of: for each peer (its link address and address family),
//! the last learning copy of a neighbour message it sent (`wire::make_learning_copy`: an ARP
//! reply or a neighbour advertisement of the peer), kept so that a stack restarted after a
//! failure learns at once the neighbours the failed one knew.
//!
//! Why: a fresh stack's neighbour cache is empty, and peers that already know the engine's
//! link address send it no ARP or neighbour solicitation for a minute or more. Its first answer
//! to each of them (a reset for a connection that went with the failed stack, the SYN-ACK of a
//! new one) would wait for a resolution of its own, and smoltcp sends one request per second
//! per stack: with many peers, answers were dropped for seconds. Fed these frames first, the
//! restarted stack answers every peer at once.
//!
//! Cost: a lock and a map update per neighbour message received (rare: a few per peer per
//! minute), nothing per packet. At most [`MAX_NEIGHBORS`] peers are kept; messages of further
//! peers are not recorded.

use std::collections::HashMap;
use std::sync::Mutex;

/// Peers kept.
pub const MAX_NEIGHBORS: usize = 4096;

/// Source MAC and ethertype of a frame: one entry per peer and address family.
type PeerKey = ([u8; 6], [u8; 2]);

/// The last learning copy of each peer's neighbour messages.
#[derive(Debug, Default)]
pub struct NeighborRecord {
    frames: Mutex<HashMap<PeerKey, Vec<u8>>>,
}

impl NeighborRecord {
    /// Keeps `learning` (a learning copy) as what its sender last taught.
    pub fn record(&self, learning: &[u8]) {
        let (Some(mac), Some(ethertype)) = (learning.get(6..12), learning.get(12..14)) else {
            return;
        };
        let key = (
            mac.try_into().expect("six bytes"),
            ethertype.try_into().expect("two bytes"),
        );
        let mut frames = self.lock();
        if frames.len() >= MAX_NEIGHBORS && !frames.contains_key(&key) {
            return;
        }
        let frame = frames.entry(key).or_default();
        frame.clear();
        frame.extend_from_slice(learning);
    }

    /// Every recorded frame.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, Vec<u8>>> {
        // The map is whole whatever panicked while it was held.
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_per_peer_and_family_the_last_one_kept() {
        let record = NeighborRecord::default();
        let frame = |mac: u8, ethertype: [u8; 2], tag: u8| {
            let mut f = vec![0xff; 6];
            f.extend([2, 0, 0, 0, 0, mac]);
            f.extend(ethertype);
            f.push(tag);
            f
        };
        record.record(&frame(1, [8, 6], 1));
        record.record(&frame(1, [8, 6], 2));
        record.record(&frame(1, [0x86, 0xdd], 3));
        record.record(&frame(2, [8, 6], 4));
        record.record(&[1, 2, 3]);
        let mut tags: Vec<u8> = record.frames().iter().map(|f| f[14]).collect();
        tags.sort();
        assert_eq!(tags, [2, 3, 4]);
    }
}
