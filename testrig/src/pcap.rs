//! Classic pcap files (libpcap's format 2.4, Ethernet link type), for captures a test replays
//! through a port (DPDK's `net_pcap` reads them with libpcap) and for what a port wrote.
//!
//! The format: a 24-byte file header (magic number, version, time zone, accuracy, snapshot
//! length, link type), then per frame a 16-byte record header (seconds, microseconds, bytes
//! captured, length on the wire) and the captured bytes. A record whose captured bytes are
//! fewer than its wire length is a truncated capture (the snapshot length cut it). Written in
//! this machine's byte order with microsecond timestamps, as libpcap writes; read in either byte
//! order, with microsecond or nanosecond timestamps.

use std::fs;
use std::path::Path;

/// `0xa1b2c3d4`: microsecond timestamps; read back swapped, the other byte order.
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// `0xa1b23c4d`: nanosecond timestamps.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// The snapshot length written: larger than any frame a test writes.
const SNAPLEN: u32 = 65_535;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The frame's length on the wire: `data.len()`, or more for a truncated capture.
    pub wire_len: u32,
}

impl Record {
    /// A frame captured whole.
    pub fn whole(data: Vec<u8>) -> Record {
        let wire_len = data.len() as u32;
        Record { data, wire_len }
    }

    /// The first `captured` bytes of `frame`, which was `frame.len()` bytes on the wire.
    pub fn truncated(frame: &[u8], captured: usize) -> Record {
        Record {
            data: frame[..captured.min(frame.len())].to_vec(),
            wire_len: frame.len() as u32,
        }
    }
}

/// The bytes of a pcap file holding `records`, one microsecond apart from the epoch on.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        FILE_HEADER_LEN
            + records
                .iter()
                .map(|r| RECORD_HEADER_LEN + r.data.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(&MAGIC_MICROS.to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes());
    out.extend_from_slice(&4u16.to_ne_bytes());
    out.extend_from_slice(&0i32.to_ne_bytes()); // time zone: UTC
    out.extend_from_slice(&0u32.to_ne_bytes()); // accuracy: unused by every reader
    out.extend_from_slice(&SNAPLEN.to_ne_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    for (i, record) in records.iter().enumerate() {
        let micros = i as u32;
        out.extend_from_slice(&(micros / 1_000_000).to_ne_bytes());
        out.extend_from_slice(&(micros % 1_000_000).to_ne_bytes());
        out.extend_from_slice(&(record.data.len() as u32).to_ne_bytes());
        out.extend_from_slice(&record.wire_len.to_ne_bytes());
        out.extend_from_slice(&record.data);
    }
    out
}

/// Writes `records` to a pcap file at `path` (see [`encode`]).
pub fn write(path: &Path, records: &[Record]) -> Result<(), String> {
    fs::write(path, encode(records)).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The records of the pcap file `bytes`; an error says what is wrong and where.
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let header = bytes
        .get(..FILE_HEADER_LEN)
        .ok_or_else(|| format!("{} bytes: shorter than a pcap file header", bytes.len()))?;
    let magic = u32::from_ne_bytes(header[..4].try_into().expect("4 bytes"));
    let swapped = match magic {
        MAGIC_MICROS | MAGIC_NANOS => false,
        m if m.swap_bytes() == MAGIC_MICROS || m.swap_bytes() == MAGIC_NANOS => true,
        m => return Err(format!("magic number {m:#010x}: not a classic pcap file")),
    };
    let word = |at: &[u8]| {
        let w = u32::from_ne_bytes(at[..4].try_into().expect("4 bytes"));
        if swapped {
            w.swap_bytes()
        } else {
            w
        }
    };
    let linktype = word(&header[20..]);
    if linktype != LINKTYPE_ETHERNET {
        return Err(format!("link type {linktype}: not Ethernet"));
    }
    let mut records = Vec::new();
    let mut at = FILE_HEADER_LEN;
    while at < bytes.len() {
        let record = bytes.get(at..at + RECORD_HEADER_LEN).ok_or_else(|| {
            format!(
                "record {} at byte {at}: header cut short",
                records.len() + 1
            )
        })?;
        let captured = word(&record[8..]) as usize;
        let wire_len = word(&record[12..]);
        let start = at + RECORD_HEADER_LEN;
        let data = bytes.get(start..start + captured).ok_or_else(|| {
            format!(
                "record {} at byte {at}: {captured} bytes captured, fewer in the file",
                records.len() + 1
            )
        })?;
        records.push(Record {
            data: data.to_vec(),
            wire_len,
        });
        at = start + captured;
    }
    Ok(records)
}

/// The records of the pcap file at `path`.
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record::whole(vec![0xff; 60]),
            Record::whole(Vec::new()),
            Record::truncated(&[7; 1514], 100),
        ]
    }

    #[test]
    fn records_come_back_as_written_truncated_ones_with_their_wire_length() {
        let bytes = encode(&records());
        assert_eq!(bytes.len(), 24 + 3 * 16 + 60 + 100);
        let back = decode(&bytes).expect("a valid file");
        assert_eq!(back, records());
        assert_eq!(back[2].wire_len, 1514);
        assert_eq!(back[2].data.len(), 100);
    }

    #[test]
    fn a_file_of_the_other_byte_order_is_read() {
        let mut bytes = encode(&records());
        // Every header field is a 32-bit word but the version's two 16-bit halves.
        let swap_words = |bytes: &mut [u8], range: std::ops::Range<usize>| {
            for word in bytes[range].chunks_mut(4) {
                word.reverse();
            }
        };
        swap_words(&mut bytes, 0..4);
        bytes[4..6].reverse();
        bytes[6..8].reverse();
        swap_words(&mut bytes, 8..24);
        let mut at = 24;
        for record in records() {
            swap_words(&mut bytes, at..at + 16);
            at += 16 + record.data.len();
        }
        assert_eq!(decode(&bytes).expect("a swapped file"), records());
    }

    #[test]
    fn cut_files_and_other_formats_are_refused_saying_where() {
        let bytes = encode(&records());
        let cut = decode(&bytes[..bytes.len() - 1]).expect_err("the last record is cut");
        assert!(
            cut.contains("record 3") && cut.contains("100 bytes captured"),
            "{cut}"
        );
        let cut = decode(&bytes[..24 + 8]).expect_err("a record header is cut");
        assert!(
            cut.contains("record 1 at byte 24: header cut short"),
            "{cut}"
        );
        let not_pcap = decode(&[0u8; 24]).expect_err("no magic number");
        assert!(not_pcap.contains("not a classic pcap file"), "{not_pcap}");
        assert!(decode(&bytes[..10]).is_err());
    }
}
