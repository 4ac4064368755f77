//! The capture reader of `port.driver = "pcap"` on arbitrary bytes as the file
//! (`CapturePort::from_reader`), replayed through every queue as the engine's threads take it:
//! no panic, and what the port delivers and drops is what a reference reading of the same bytes
//! says, record by record:
//!
//! - every record is a frame delivered or a drop under exactly one reason
//!   (`capture_not_ethernet`, `capture_truncated`, `capture_oversize`, `capture_unreadable`),
//!   and the port's record count is their sum;
//! - a delivered frame fits the pool's data room, and it arrives on the queue software RSS
//!   gives it, with the receive hash software RSS computes;
//! - each queue delivers, in capture order, exactly the frames the reference reading puts on it,
//!   and each queue's drops per reason are exactly the reference's.
//!
//! The reference reading here is written from the formats' specifications, apart from
//! `pcap-file` and from `nic/src/capture/read.rs`. For classic pcap it is exact for every input
//! (the reader only stops at a record cut off by the end of the input). For pcapng it frames
//! blocks and reads packet blocks' fixed fields, not their options: when the reader stops
//! early (`capture_unreadable`, for a block the crate refuses), the records before that block
//! must match the reference's first ones; when it reads to the end, all of them must, and so
//! must the count of skipped blocks of unknown types.
//!
//! Every input runs under two configurations: 4 queues with a data room of 2048 bytes (the
//! default) and 3 queues with 128 (the least `pool.data_room` takes), where most frames are
//! oversize. libFuzzer's inputs stay far below `pcap-file`'s 8 MB read buffer, whose limit on
//! one record the reference does not model.
#![no_main]

use std::sync::{Arc, OnceLock};

use flowsteer_nic::capture::{CaptureConfig, CaptureError, CapturePort, Pace};
use flowsteer_nic::pool::PacketPool;
use flowsteer_nic::port::{Port, PortControl, QueuePair};
use flowsteer_nic::rss::{SoftRss, MICROSOFT_KEY};
use libfuzzer_sys::fuzz_target;

/// (queues, data room) of each run.
const CONFIGS: [(u16, u16); 2] = [(4, 2048), (3, 128)];
const RETA_SIZE: usize = 128;
const BURST: usize = 32;
/// The reasons in the order the reference counts them, by the names the port reports.
const REASONS: [&str; 4] = [
    "capture_not_ethernet",
    "capture_truncated",
    "capture_oversize",
    "capture_unreadable",
];
const NOT_ETHERNET: usize = 0;
const TRUNCATED: usize = 1;
const OVERSIZE: usize = 2;
const UNREADABLE: usize = 3;
/// LINKTYPE_ETHERNET.
const ETHERNET: u32 = 1;

/// A heap pool per configuration, shared by the inputs: each input must give every buffer back.
fn pool(config: usize) -> &'static Arc<PacketPool> {
    static POOLS: [OnceLock<Arc<PacketPool>>; CONFIGS.len()] = [OnceLock::new(), OnceLock::new()];
    POOLS[config].get_or_init(|| PacketPool::new(256, CONFIGS[config].1).expect("a heap pool"))
}

/// The software RSS of each configuration, as the port builds its own.
fn rss(config: usize) -> &'static SoftRss {
    static RSS: [OnceLock<SoftRss>; CONFIGS.len()] = [OnceLock::new(), OnceLock::new()];
    RSS[config].get_or_init(|| {
        SoftRss::new(&MICROSOFT_KEY, RETA_SIZE, CONFIGS[config].0).expect("software RSS")
    })
}

/// One record as the reference reads it.
#[derive(Debug)]
enum Record<'a> {
    /// A packet: the bytes captured, its length on the wire, whether its link is Ethernet.
    Packet {
        ethernet: bool,
        data: &'a [u8],
        wire_len: u32,
    },
    /// A pcapng packet of an interface its section did not describe.
    NoInterface,
    /// A classic pcap record cut off by the end of the input: the reading's last record.
    Cut,
}

/// The reference reading of an input.
#[derive(Debug, Default)]
struct Reading<'a> {
    records: Vec<Record<'a>>,
    /// Every block (pcapng) was framed up to the end of the input.
    to_the_end: bool,
    /// pcapng: the first block is a framed Section Header Block.
    first_section_framed: bool,
    /// pcapng: blocks of types `pcap-file` does not know.
    unknown_blocks: u64,
}

/// A 32-bit word in the byte order `big` says.
fn word(bytes: &[u8], big: bool) -> u32 {
    let bytes: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    if big {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

fn half(bytes: &[u8], big: bool) -> u16 {
    let bytes: [u8; 2] = bytes[..2].try_into().expect("2 bytes");
    if big {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

/// Classic pcap (libpcap's format 2.4): `None` when the 24-byte file header is missing or
/// its magic number is not one of the four.
fn read_pcap(input: &[u8]) -> Option<Reading<'_>> {
    let header = input.get(..24)?;
    let big = match header[..4] {
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        _ => return None,
    };
    let ethernet = word(&header[20..], big) == ETHERNET;
    let mut reading = Reading::default();
    let mut at = 24;
    while at < input.len() {
        let Some(record) = input.get(at..at + 16) else {
            reading.records.push(Record::Cut);
            break;
        };
        let captured = word(&record[8..], big) as usize;
        let wire_len = word(&record[12..], big);
        let Some(data) = input.get(at + 16..at + 16 + captured) else {
            reading.records.push(Record::Cut);
            break;
        };
        reading.records.push(Record::Packet {
            ethernet,
            data,
            wire_len,
        });
        at += 16 + captured;
    }
    Some(reading)
}

const SECTION_HEADER: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// pcapng: blocks framed by their type, total length and trailing copy of the length, in the
/// byte order of their section; packet blocks read by their fixed fields. Stops at the first
/// block that cannot be framed or whose fixed fields do not fit its body.
fn read_pcapng(input: &[u8]) -> Reading<'_> {
    let mut reading = Reading::default();
    let mut big = true;
    // Per interface of the current section: Ethernet or not, snapshot length.
    let mut interfaces: Vec<(bool, u32)> = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let Some(head) = input.get(at..at + 12) else {
            return reading;
        };
        if head[..4] == SECTION_HEADER {
            big = match head[8..12] {
                [0x1a, 0x2b, 0x3c, 0x4d] => true,
                [0x4d, 0x3c, 0x2b, 0x1a] => false,
                _ => return reading,
            };
        }
        let block_type = word(head, big);
        let len = word(&head[4..], big) as usize;
        if !len.is_multiple_of(4) || len < 12 {
            return reading;
        }
        let Some(block) = input.get(at..at + len) else {
            return reading;
        };
        if word(&block[len - 4..], big) as usize != len {
            return reading;
        }
        let body = &block[8..len - 4];
        let packet = |interface: Option<&(bool, u32)>, data, wire_len| match interface {
            Some(&(ethernet, _)) => Record::Packet {
                ethernet,
                data,
                wire_len,
            },
            None => Record::NoInterface,
        };
        match block_type {
            0x0a0d_0d0a => {
                interfaces.clear();
                reading.first_section_framed |= at == 0;
            }
            // Interface Description: link type (16 bits), reserved, snapshot length.
            1 => {
                if body.len() < 8 {
                    return reading;
                }
                let ethernet = u32::from(half(body, big)) == ETHERNET;
                interfaces.push((ethernet, word(&body[4..], big)));
            }
            // Enhanced Packet: interface (32 bits), timestamp, captured length, length.
            6 => {
                let Some((interface, data, wire_len)) = packet_fields(body, big, false) else {
                    return reading;
                };
                let record = packet(interfaces.get(interface), data, wire_len);
                reading.records.push(record);
            }
            // Packet (obsolete): interface (16 bits), drops, then as an Enhanced Packet.
            2 => {
                let Some((interface, data, wire_len)) = packet_fields(body, big, true) else {
                    return reading;
                };
                let record = packet(interfaces.get(interface), data, wire_len);
                reading.records.push(record);
            }
            // Simple Packet: the length on the wire, then the packet of interface 0, captured
            // up to the interface's snapshot length (0: none), padded to 32 bits.
            3 => {
                if body.len() < 4 {
                    return reading;
                }
                let wire_len = word(body, big);
                let record = match interfaces.first() {
                    Some(&(ethernet, snaplen)) => {
                        let cap = if snaplen == 0 {
                            wire_len
                        } else {
                            wire_len.min(snaplen)
                        };
                        let data = &body[4..][..(cap as usize).min(body.len() - 4)];
                        Record::Packet {
                            ethernet,
                            data,
                            wire_len,
                        }
                    }
                    None => Record::NoInterface,
                };
                reading.records.push(record);
            }
            // Name resolution, interface statistics, systemd journal export: no frame.
            4 | 5 | 9 => {}
            _ => reading.unknown_blocks += 1,
        }
        at += len;
    }
    reading.to_the_end = true;
    reading
}

/// An Enhanced (or, `obsolete`, a Packet) Block's interface, captured bytes and wire length;
/// `None` when the body is shorter than its fixed fields and captured bytes.
fn packet_fields(body: &[u8], big: bool, obsolete: bool) -> Option<(usize, &[u8], u32)> {
    let fixed = body.get(..20)?;
    let interface = if obsolete {
        usize::from(half(fixed, big))
    } else {
        word(fixed, big) as usize
    };
    let captured = word(&fixed[12..], big) as usize;
    let data = body.get(20..20 + captured)?;
    Some((interface, data, word(&fixed[16..], big)))
}

/// What a port replaying `records` delivers per queue and drops per queue and reason.
#[derive(Debug, PartialEq, Eq)]
struct Outcome<'a> {
    frames: Vec<Vec<&'a [u8]>>,
    drops: Vec<[u64; 4]>,
}

impl<'a> Outcome<'a> {
    fn of(records: &[Record<'a>], rss: &SoftRss, data_room: usize) -> Outcome<'a> {
        let queues = usize::from(rss.reta.queues());
        let mut outcome = Outcome {
            frames: vec![Vec::new(); queues],
            drops: vec![[0; 4]; queues],
        };
        for record in records {
            match *record {
                Record::Packet {
                    ethernet: false, ..
                } => outcome.drops[0][NOT_ETHERNET] += 1,
                Record::Packet { data, wire_len, .. } => {
                    let queue = usize::from(rss.queue_of(data).1);
                    if data.len() < wire_len as usize {
                        outcome.drops[queue][TRUNCATED] += 1;
                    } else if data.len() > data_room {
                        outcome.drops[queue][OVERSIZE] += 1;
                    } else {
                        outcome.frames[queue].push(data);
                    }
                }
                Record::NoInterface | Record::Cut => outcome.drops[0][UNREADABLE] += 1,
            }
        }
        outcome
    }
}

/// Every frame of every queue, taken in bursts as a stack thread takes them: each checked
/// against the pool's data room and software RSS, then freed.
fn replay(port: &CapturePort, config: usize, rss: &SoftRss) -> Vec<Vec<Vec<u8>>> {
    let data_room = usize::from(CONFIGS[config].1);
    let mut cache = pool(config).cache(BURST as u32);
    let mut burst = Vec::new();
    let mut frames = Vec::new();
    for q in 0..port.queues() {
        let mut queue = port.take_queue(q).expect("a free queue");
        let mut delivered = Vec::new();
        while queue.rx_burst(&mut cache, &mut burst, BURST) > 0 {
            for buf in &burst {
                assert!(buf.len() <= data_room, "{} bytes delivered", buf.len());
                assert_eq!(
                    rss.queue_of(buf.data()),
                    (buf.rss_hash(), q),
                    "a frame's hash and queue are software RSS's"
                );
                delivered.push(buf.data().to_vec());
            }
            cache.free_bulk(&mut burst);
        }
        frames.push(delivered);
    }
    assert!(port.exhausted(), "every queue returned its last frame");
    drop(cache);
    let pool = pool(config);
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
    frames
}

fn check(input: &[u8], config: usize) {
    let (queues, data_room) = CONFIGS[config];
    let capture = CaptureConfig {
        path: "fuzz input".into(),
        queues,
        rss_key: MICROSOFT_KEY,
        reta_size: RETA_SIZE,
        mac: [0x02, 0, 0, 0, 0, 0x01],
        pace: Pace::Full,
        data_room,
    };
    let rss = rss(config);
    let pcapng = input.starts_with(&SECTION_HEADER);
    let reading = if pcapng {
        Some(read_pcapng(input))
    } else {
        read_pcap(input)
    };
    let port = match CapturePort::from_reader(&capture, input) {
        Ok(port) => port,
        Err(CaptureError::Format(why)) => {
            // Refused: not a capture (the reference has no reading either), or a pcapng file
            // whose first section header the crate refuses (perhaps for its options, which the
            // reference does not read).
            assert!(pcapng || reading.is_none(), "refused: {why}");
            return;
        }
        Err(e) => panic!("not a format error: {e}"),
    };
    let reading = reading.expect("a capture was read: the reference reads it too");
    if pcapng {
        assert!(reading.first_section_framed);
    }

    let frames = replay(&port, config, rss);
    let drops: Vec<[u64; 4]> = port
        .drops()
        .iter()
        .map(|queue| {
            assert_eq!(
                queue.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
                REASONS
            );
            std::array::from_fn(|i| queue[i].1)
        })
        .collect();
    let delivered: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(
        port.frames_per_queue(),
        frames.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let dropped: u64 = drops.iter().flatten().sum();
    assert_eq!(
        port.records(),
        delivered as u64 + dropped,
        "records = frames + drops"
    );

    // The reference: for classic pcap, every record, a cut one last; for pcapng, all of its
    // records when the reader read to the end, else those before the block the reader refused,
    // then that block as one unreadable record.
    let stopped = port.stopped_early().is_some();
    let records = &reading.records;
    let expected = if !pcapng {
        assert_eq!(records.len() as u64, port.records(), "{records:?}");
        assert_eq!(stopped, matches!(records.last(), Some(Record::Cut)));
        Outcome::of(records, rss, usize::from(data_room))
    } else if stopped {
        let before = port.records() as usize - 1;
        assert!(
            records.len() >= before,
            "the reader read {before} records before it stopped, the reference {}: {records:?}",
            records.len()
        );
        let mut expected = Outcome::of(&records[..before], rss, usize::from(data_room));
        expected.drops[0][UNREADABLE] += 1;
        expected
    } else {
        assert!(
            reading.to_the_end,
            "the reader read blocks the reference could not frame"
        );
        assert_eq!(records.len() as u64, port.records(), "{records:?}");
        assert_eq!(port.unknown_blocks(), reading.unknown_blocks);
        Outcome::of(records, rss, usize::from(data_room))
    };
    let got = Outcome {
        frames: frames
            .iter()
            .map(|q| q.iter().map(Vec::as_slice).collect())
            .collect(),
        drops,
    };
    assert_eq!(got, expected);
}

fuzz_target!(|input: &[u8]| {
    for config in 0..CONFIGS.len() {
        check(input, config);
    }
});
