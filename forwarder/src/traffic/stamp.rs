//! The stamp: 16 bytes the generator writes at the start of every L4 payload.
//!
//! It carries the ground truth the receiving side checks: the thread that owns the flow according
//! to the rules the generator installed, whether the packet is the flow's last one (its owner then
//! deletes the flow's exact rule, as a stack does on close), the flow and a per-flow sequence number.
//!
//! Layout (network byte order):
//!
//! ```text
//! 0      4        6       7          8        12       16
//! +------+--------+-------+----------+--------+--------+
//! | FSTR | owner  | flags | reserved |  flow  |  seq   |
//! +------+--------+-------+----------+--------+--------+
//! flags: bit 0 = last packet of the flow; bits 1..7 and the reserved byte are zero.
//! ```
//!
//! Reading and writing are a handful of fixed-offset loads and stores, no allocation, any thread.

use flowtable::ThreadId;

/// Identifies a generated payload (so frames from other sources are "unverified", not misread).
const MAGIC: [u8; 4] = *b"FSTR";
/// Bit of the flags byte that marks the flow's last packet.
const FLAG_LAST: u8 = 0x01;

/// The ownership record at the start of every generated L4 payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The thread that owns the flow (holds its socket) according to the installed rules.
    pub owner: ThreadId,
    /// This is the flow's last packet: its owner deletes the flow's exact rule on processing it.
    pub last: bool,
    /// The flow's number (initial flows are 0..flows; flows set up later get fresh numbers).
    pub flow: u32,
    /// The packet's sequence number within its flow, from 0 (wraps after 2^32 packets).
    pub seq: u32,
}

impl Stamp {
    /// Bytes of a stamp.
    pub const LEN: usize = 16;

    /// Offset of the flags byte (the only stamp byte besides `seq` that changes between two
    /// packets of one flow).
    pub(crate) const FLAGS_OFFSET: usize = 6;
    /// Offset of the sequence number.
    pub(crate) const SEQ_OFFSET: usize = 12;

    /// The stamp at the start of `payload`; `None` if the payload is shorter than [`Stamp::LEN`],
    /// does not start with the magic, or has a reserved bit set.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let bytes: &[u8; Stamp::LEN] = payload.get(..Stamp::LEN)?.try_into().ok()?;
        if bytes[..4] != MAGIC || bytes[6] & !FLAG_LAST != 0 || bytes[7] != 0 {
            return None;
        }
        Some(Stamp {
            owner: u16::from_be_bytes([bytes[4], bytes[5]]),
            last: bytes[6] & FLAG_LAST != 0,
            flow: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            seq: u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        })
    }

    /// Writes the stamp to the start of `out`; `false` (and nothing written) if `out` is shorter
    /// than [`Stamp::LEN`].
    pub fn write(&self, out: &mut [u8]) -> bool {
        match out.get_mut(..Stamp::LEN) {
            Some(field) => {
                field.copy_from_slice(&self.to_bytes());
                true
            }
            None => false,
        }
    }

    /// The 16 bytes of the stamp.
    pub fn to_bytes(&self) -> [u8; Stamp::LEN] {
        let mut bytes = [0u8; Stamp::LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&self.owner.to_be_bytes());
        bytes[Self::FLAGS_OFFSET] = if self.last { FLAG_LAST } else { 0 };
        bytes[8..12].copy_from_slice(&self.flow.to_be_bytes());
        bytes[Self::SEQ_OFFSET..].copy_from_slice(&self.seq.to_be_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for stamp in [
            Stamp {
                owner: 0,
                last: false,
                flow: 0,
                seq: 0,
            },
            Stamp {
                owner: 63,
                last: true,
                flow: 0x0102_0304,
                seq: u32::MAX,
            },
            Stamp {
                owner: u16::MAX,
                last: false,
                flow: u32::MAX,
                seq: 7,
            },
        ] {
            let mut buf = [0xaau8; 20];
            assert!(stamp.write(&mut buf));
            assert_eq!(Stamp::read(&buf), Some(stamp));
            assert_eq!(
                &buf[16..],
                &[0xaa; 4],
                "write must not touch bytes past the stamp"
            );
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        let stamp = Stamp {
            owner: 0x0203,
            last: true,
            flow: 0x0405_0607,
            seq: 0x0809_0a0b,
        };
        assert_eq!(
            stamp.to_bytes(),
            [b'F', b'S', b'T', b'R', 2, 3, 1, 0, 4, 5, 6, 7, 8, 9, 10, 11]
        );
    }

    #[test]
    fn rejects_short_foreign_and_reserved() {
        let good = Stamp {
            owner: 1,
            last: false,
            flow: 2,
            seq: 3,
        }
        .to_bytes();
        assert_eq!(Stamp::read(&good[..15]), None);
        assert_eq!(Stamp::read(&[]), None);
        let mut short = [0u8; 15];
        assert!(!Stamp {
            owner: 1,
            last: false,
            flow: 2,
            seq: 3
        }
        .write(&mut short));
        assert_eq!(short, [0u8; 15], "a failed write writes nothing");

        let mut foreign = good;
        foreign[0] = b'X';
        assert_eq!(Stamp::read(&foreign), None);
        let mut flag_bit = good;
        flag_bit[6] = 0x02;
        assert_eq!(Stamp::read(&flag_bit), None);
        let mut reserved = good;
        reserved[7] = 1;
        assert_eq!(Stamp::read(&reserved), None);
        assert_eq!(Stamp::read(&[0u8; 16]), None);
    }
}
