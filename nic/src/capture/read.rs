//! Reading a capture once, at start, into one list of frames per receive queue.
//!
//! The format is told by the first four bytes: a pcapng Section Header Block, or one of the
//! classic pcap magic numbers (either byte order, micro- or nanosecond timestamps); the records
//! are parsed by the `pcap-file` crate. Each record is either kept, on the queue soft RSS
//! chooses for it, or counted as a drop by reason ([`Reason`]). A record the reader cannot
//! frame (a cut-off file, a length field beyond the format's limits) ends the reading: the
//! formats have no marker to find the next record by, so it counts as one unreadable record and
//! what follows it is not seen.
//!
//! The input is any [`Read`]: the port reads a file, the fuzz target (`fuzz/`, `capture`) bytes
//! in memory. `pcap-file` reads through a buffer of its own (8 MB), so the input needs none.

use std::io::Read;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::{CaptureError, MAX_CAPTURE_BYTES};
use crate::rss::SoftRss;

/// Why a record of the capture was not delivered as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// The record's link type is not Ethernet (LINKTYPE_ETHERNET).
    NotEthernet,
    /// Fewer bytes were captured than the frame had on the wire (the snapshot length cut it).
    Truncated,
    /// The frame is longer than a buffer's data room.
    Oversize,
    /// The record could not be parsed (and the reading stopped there), or a pcapng packet
    /// names an interface the section did not describe.
    Unreadable,
}

impl Reason {
    /// Every reason, in the order [`crate::port::PortControl::drops`] lists them.
    pub(super) const ALL: [Reason; 4] = [
        Reason::NotEthernet,
        Reason::Truncated,
        Reason::Oversize,
        Reason::Unreadable,
    ];

    /// The name the report and the metrics show.
    pub(super) fn name(self) -> &'static str {
        match self {
            Reason::NotEthernet => "capture_not_ethernet",
            Reason::Truncated => "capture_truncated",
            Reason::Oversize => "capture_oversize",
            Reason::Unreadable => "capture_unreadable",
        }
    }
}

/// One frame kept for a queue: where its bytes are in the queue's store, when it was captured
/// relative to the capture's first record, and its receive hash.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub start: usize,
    pub len: usize,
    pub at: Duration,
    pub hash: u32,
}

/// The frames of one queue, in capture order, their bytes back to back in one allocation.
#[derive(Debug, Default)]
pub(super) struct QueueFrames {
    pub bytes: Vec<u8>,
    pub frames: Vec<Frame>,
}

impl QueueFrames {
    pub(super) fn data(&self, frame: &Frame) -> &[u8] {
        &self.bytes[frame.start..frame.start + frame.len]
    }
}

/// A capture split over the queues, with the records that were not kept, per queue and reason.
#[derive(Debug)]
pub(super) struct Capture {
    pub queues: Vec<QueueFrames>,
    pub drops: Vec<[u64; Reason::ALL.len()]>,
    /// Records seen (kept or dropped, an unreadable one included).
    pub records: u64,
    /// Why the reading stopped early, if it did.
    pub stopped: Option<String>,
    /// pcapng blocks of a type this reader does not know, skipped (see [`read_pcapng`]).
    pub unknown_blocks: u64,
}

/// The first four bytes of a pcapng file (its Section Header Block's type).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// The classic pcap magic numbers (micro- and nanosecond), in both byte orders.
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];

/// Builds a [`Capture`]: the place of each record decided by `rss`, `data_room` the largest
/// frame a buffer holds.
struct Splitter<'a> {
    rss: &'a SoftRss,
    data_room: usize,
    capture: Capture,
    held: u64,
    first: Option<Duration>,
}

impl Splitter<'_> {
    fn drop(&mut self, queue: u16, reason: Reason) {
        self.capture.records += 1;
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.capture.drops[usize::from(queue)][index] += 1;
    }

    /// One record: `data` as captured, `wire_len` its length on the wire, `at` its timestamp.
    fn record(
        &mut self,
        ethernet: bool,
        data: &[u8],
        wire_len: u32,
        at: Duration,
    ) -> Result<(), CaptureError> {
        let first = *self.first.get_or_insert(at);
        if !ethernet {
            // No Ethernet header to hash: counted on queue 0.
            self.drop(0, Reason::NotEthernet);
            return Ok(());
        }
        let (hash, queue) = self.rss.queue_of(data);
        if data.len() < wire_len as usize {
            self.drop(queue, Reason::Truncated);
            return Ok(());
        }
        if data.len() > self.data_room {
            self.drop(queue, Reason::Oversize);
            return Ok(());
        }
        self.held += data.len() as u64;
        if self.held > MAX_CAPTURE_BYTES {
            return Err(CaptureError::TooLarge {
                limit: MAX_CAPTURE_BYTES,
            });
        }
        self.capture.records += 1;
        let frames = &mut self.capture.queues[usize::from(queue)];
        frames.frames.push(Frame {
            start: frames.bytes.len(),
            len: data.len(),
            at: at.saturating_sub(first),
            hash,
        });
        frames.bytes.extend_from_slice(data);
        Ok(())
    }

    /// A record that could not be parsed: counted, and the reading stops.
    fn unreadable(&mut self, why: String) {
        self.drop(0, Reason::Unreadable);
        self.capture.stopped = Some(why);
    }
}

/// Reads the capture `input` holds and splits its frames over `rss`'s queues.
///
/// Errors: the input cannot be read, is neither pcap nor pcapng, its header cannot be parsed,
/// or its frames exceed [`MAX_CAPTURE_BYTES`].
pub(super) fn read(
    mut input: impl Read,
    rss: &SoftRss,
    data_room: usize,
) -> Result<Capture, CaptureError> {
    let mut magic = [0u8; 4];
    input
        .read_exact(&mut magic)
        .map_err(|e| CaptureError::Format(format!("cannot read the file's first 4 bytes: {e}")))?;
    let queues = usize::from(rss.reta.queues());
    let mut splitter = Splitter {
        rss,
        data_room,
        capture: Capture {
            queues: (0..queues).map(|_| QueueFrames::default()).collect(),
            drops: vec![[0; Reason::ALL.len()]; queues],
            records: 0,
            stopped: None,
            unknown_blocks: 0,
        },
        held: 0,
        first: None,
    };
    let whole = std::io::Cursor::new(magic).chain(input);
    if magic == PCAPNG_MAGIC {
        read_pcapng(whole, &mut splitter)?;
    } else if PCAP_MAGICS.contains(&magic) {
        read_pcap(whole, &mut splitter)?;
    } else {
        return Err(CaptureError::Format(format!(
            "not a pcap or pcapng file (it starts with {magic:02x?})"
        )));
    }
    Ok(splitter.capture)
}

/// Classic pcap: every record as libpcap hands it over. The crate's checked records
/// (`next_packet`) refuse one whose length on the wire exceeds the header's snapshot length,
/// which is every record the snapshot length cut (`tcpdump -s 96`: the very records
/// `capture_truncated` counts), or one whose timestamp fraction is a second or more; either
/// refusal would end the reading there. So records are taken raw (`next_raw_packet` only frames
/// them) and judged here, as libpcap and Wireshark read them: the snapshot length is not
/// enforced (the data room is), a fraction of a second or more carries into the seconds, and a
/// record with more bytes captured than it had on the wire is replayed as captured.
fn read_pcap(input: impl Read, splitter: &mut Splitter<'_>) -> Result<(), CaptureError> {
    let mut reader = PcapReader::new(input)
        .map_err(|e| CaptureError::Format(format!("pcap file header: {e}")))?;
    let header = reader.header();
    let ethernet = header.datalink == DataLink::ETHERNET;
    let nanos_per_unit = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    while let Some(packet) = reader.next_raw_packet() {
        match packet {
            Ok(packet) => {
                let at = Duration::from_secs(u64::from(packet.ts_sec))
                    + Duration::from_nanos(u64::from(packet.ts_frac) * nanos_per_unit);
                splitter.record(ethernet, &packet.data, packet.orig_len, at)?
            }
            Err(e) => {
                splitter.unreadable(format!("pcap record: {e}"));
                break;
            }
        }
    }
    Ok(())
}

/// What the packets of one pcapng interface need from its description block.
#[derive(Clone, Copy)]
struct Interface {
    ethernet: bool,
    /// Timestamp units per second (see [`resolution`]).
    per_second: u32,
    /// The interface's snapshot length, 0 for none.
    snaplen: u32,
}

/// pcapng: Enhanced, Simple and (obsolete) Packet Blocks are records; a Simple one belongs to
/// interface 0 and takes the timestamp of the record before it. Section headers and interface
/// descriptions say how to read the records; name resolution, interface statistics and journal
/// blocks describe the capture and carry no frame. A block of any other type (a decryption
/// secrets block, a custom block, a type newer than the crate) is skipped, as the format asks
/// of a reader that does not know it, and counted in [`Capture::unknown_blocks`], which the
/// port's description shows: it is not a record, so it is not a drop either.
fn read_pcapng(input: impl Read, splitter: &mut Splitter<'_>) -> Result<(), CaptureError> {
    let mut reader = PcapNgReader::new(input)
        .map_err(|e| CaptureError::Format(format!("pcapng section header: {e}")))?;
    let mut last = Duration::ZERO;
    // The interfaces of the current section. The reader adds an interface as it returns its
    // description block (and a section header clears them), so the table is read again after
    // those.
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut little_endian = false;
    let mut stale = true;
    loop {
        if stale {
            little_endian = reader.section().endianness == Endianness::Little;
            interfaces = reader
                .interfaces()
                .iter()
                .map(|i| Interface {
                    ethernet: i.linktype == DataLink::ETHERNET,
                    per_second: resolution(&i.options),
                    snaplen: i.snaplen,
                })
                .collect();
            stale = false;
        }
        let Some(block) = reader.next_block() else {
            return Ok(());
        };
        match block {
            Ok(Block::EnhancedPacket(epb)) => {
                let Some(interface) = interfaces.get(epb.interface_id as usize) else {
                    splitter.drop(0, Reason::Unreadable);
                    continue;
                };
                last = rescale(epb.timestamp, interface.per_second);
                splitter.record(interface.ethernet, &epb.data, epb.original_len, last)?;
            }
            Ok(Block::Packet(pb)) => {
                let Some(interface) = interfaces.get(usize::from(pb.interface_id)) else {
                    splitter.drop(0, Reason::Unreadable);
                    continue;
                };
                // The timestamp is two 32-bit words, the high one first, as in an Enhanced
                // Packet Block; the crate reads them as one 64-bit integer in the section's
                // byte order, which swaps the words in a little-endian section.
                let units = if little_endian {
                    pb.timestamp.rotate_left(32)
                } else {
                    pb.timestamp
                };
                let read = Duration::from_nanos(units);
                last = rescale(read, interface.per_second);
                splitter.record(interface.ethernet, &pb.data, pb.original_len, last)?;
            }
            Ok(Block::SimplePacket(spb)) => {
                let Some(interface) = interfaces.first() else {
                    splitter.drop(0, Reason::Unreadable);
                    continue;
                };
                let captured = simple_captured(spb.data.len(), spb.original_len, interface.snaplen);
                splitter.record(
                    interface.ethernet,
                    &spb.data[..captured],
                    spb.original_len,
                    last,
                )?;
            }
            Ok(Block::InterfaceDescription(_) | Block::SectionHeader(_)) => stale = true,
            Ok(Block::Unknown(_)) => splitter.capture.unknown_blocks += 1,
            Ok(
                Block::NameResolution(_)
                | Block::InterfaceStatistics(_)
                | Block::SystemdJournalExport(_),
            ) => {}
            Err(e) => {
                splitter.unreadable(format!("pcapng block: {e}"));
                return Ok(());
            }
        }
    }
}

/// The captured bytes of a Simple Packet Block whose body after the length field holds `body`
/// bytes: the block has no captured-length field, so the format defines it as the packet's
/// length capped by interface 0's snapshot length (0: none). The body is padded to 32 bits,
/// and `pcap-file` hands the padding over as data: taking `body` whole would add up to 3 bytes
/// to the frame. A body shorter than that is a frame cut short (counted as truncated).
fn simple_captured(body: usize, original_len: u32, snaplen: u32) -> usize {
    let captured = match snaplen {
        0 => original_len,
        snaplen => original_len.min(snaplen),
    };
    body.min(captured as usize)
}

/// Timestamp units per second of a pcapng interface (`if_tsresol`; default microseconds), or 0
/// when they are more than a `u32` holds (then timestamps are not rescaled).
fn resolution(options: &[InterfaceDescriptionOption<'_>]) -> u32 {
    let tsresol = options.iter().find_map(|o| match o {
        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
        _ => None,
    });
    match tsresol {
        None => 1_000_000,
        Some(r) if r & 0x80 == 0 => 10u32.checked_pow(u32::from(r)).unwrap_or(0),
        Some(r) => 2u32.checked_pow(u32::from(r & 0x7f)).unwrap_or(0),
    }
}

/// pcap-file 2 reads an Enhanced Packet Block's 64-bit timestamp as a count of nanoseconds
/// whatever the interface's resolution: the count is taken back and divided by the units per
/// second the interface declares.
fn rescale(read: Duration, per_second: u32) -> Duration {
    if per_second == 0 {
        return read;
    }
    let units = read.as_nanos();
    let per_second = u128::from(per_second);
    let secs = u64::try_from(units / per_second).unwrap_or(u64::MAX);
    let nanos = (units % per_second) * 1_000_000_000 / per_second;
    Duration::new(secs, nanos as u32)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rss::MICROSOFT_KEY;
    use flowsteer_testrig::pcap::{encode, Record};
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use pcap_file::pcapng::blocks::unknown::UnknownBlock;
    use pcap_file::pcapng::{PcapNgWriter, RawBlock};
    use std::borrow::Cow;

    /// An Ethernet frame of `len` bytes typed IPv4, all its other bytes `n`.
    pub(in crate::capture) fn frame(n: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![n; len];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame
    }

    fn split(bytes: &[u8]) -> Capture {
        let rss = SoftRss::new(&MICROSOFT_KEY, 128, 2).unwrap();
        read(bytes, &rss, 2048).unwrap()
    }

    /// The drops of `reason` over every queue.
    fn drops(capture: &Capture, reason: Reason) -> u64 {
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap();
        capture.drops.iter().map(|d| d[index]).sum()
    }

    /// The delivered frames, in capture order, with their offsets.
    fn delivered(capture: &Capture) -> Vec<(Vec<u8>, Duration)> {
        let mut frames: Vec<(Vec<u8>, Duration)> = capture
            .queues
            .iter()
            .flat_map(|q| q.frames.iter().map(|f| (q.data(f).to_vec(), f.at)))
            .collect();
        frames.sort_by_key(|(_, at)| *at);
        frames
    }

    /// What `tcpdump -s 96` writes: a snapshot length of 96 in the file header, and records of
    /// longer frames cut to 96 bytes, their wire length beyond the snapshot length.
    #[test]
    fn a_capture_cut_by_its_snapshot_length_counts_truncated_records_and_reads_on() {
        let mut records: Vec<Record> = (0..3)
            .map(|n| Record::truncated(&frame(n, 542), 96))
            .collect();
        records.push(Record::whole(frame(7, 60)));
        let mut bytes = encode(&records);
        bytes[16..20].copy_from_slice(&96u32.to_ne_bytes());
        let capture = split(&bytes);
        assert_eq!(capture.stopped, None);
        assert_eq!(capture.records, 4);
        assert_eq!(drops(&capture, Reason::Truncated), 3);
        assert_eq!(delivered(&capture).len(), 1);
    }

    /// libpcap takes a record's timestamp and lengths as they are: a fraction of a second or
    /// more carries into the seconds, and more bytes captured than on the wire are replayed.
    #[test]
    fn a_pcap_record_with_an_odd_timestamp_or_length_is_replayed() {
        let long = Record {
            data: frame(2, 80),
            wire_len: 60,
        };
        let records = [Record::whole(frame(1, 60)), long];
        let mut bytes = encode(&records);
        // The second record's fraction: 1.5 million microseconds.
        let second = 24 + 16 + 60;
        bytes[second + 4..second + 8].copy_from_slice(&1_500_000u32.to_ne_bytes());
        let capture = split(&bytes);
        assert_eq!(capture.stopped, None);
        assert_eq!(capture.records, 2);
        let frames = delivered(&capture);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], (frame(2, 80), Duration::from_millis(1500)));
    }

    fn interface(snaplen: u32) -> InterfaceDescriptionBlock<'static> {
        InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        }
    }

    fn simple(frame: &[u8], original_len: usize) -> SimplePacketBlock<'_> {
        SimplePacketBlock {
            original_len: original_len as u32,
            data: Cow::Borrowed(frame),
        }
    }

    /// Simple Packet Blocks lose their padding and respect interface 0's snapshot length;
    /// obsolete Packet Blocks are records like Enhanced ones; blocks of unknown types are
    /// skipped and counted; a packet with no interface to belong to is unreadable and the
    /// reading goes on.
    #[test]
    fn every_pcapng_packet_block_is_a_record_and_unknown_blocks_are_counted() {
        let mut writer = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little).unwrap();
        let odd = frame(1, 61);
        writer.write_pcapng_block(simple(&odd, 61)).unwrap();
        writer.write_pcapng_block(interface(0)).unwrap();
        writer.write_pcapng_block(simple(&odd, 61)).unwrap();
        // Packet Blocks as the format has them (the crate would write the timestamp as one
        // 64-bit integer): 2 s in nanoseconds, high word first.
        let old = frame(2, 70);
        let packet = |interface_id: u16| {
            let mut body = Vec::new();
            body.extend_from_slice(&interface_id.to_le_bytes());
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(&2_000_000_000u32.to_le_bytes());
            body.extend_from_slice(&(old.len() as u32).to_le_bytes());
            body.extend_from_slice(&(old.len() as u32).to_le_bytes());
            body.extend_from_slice(&old);
            body.resize(body.len().next_multiple_of(4), 0);
            let len = body.len() as u32 + 12;
            RawBlock {
                type_: 2,
                initial_len: len,
                body: Cow::Owned(body),
                trailer_len: len,
            }
        };
        writer.write_raw_block(&packet(0)).unwrap();
        writer.write_raw_block(&packet(1)).unwrap();
        // A Decryption Secrets Block, which the crate does not know.
        let secrets = UnknownBlock::new(0x0a, 20, &[0; 8]);
        writer.write_pcapng_block(secrets).unwrap();
        // A new section, its interface 0 with a snapshot length of 40.
        writer
            .write_pcapng_block(SectionHeaderBlock::default())
            .unwrap();
        writer.write_pcapng_block(interface(40)).unwrap();
        writer.write_pcapng_block(simple(&odd[..40], 61)).unwrap();
        let capture = split(&writer.into_inner());
        assert_eq!(capture.stopped, None);
        assert_eq!(capture.unknown_blocks, 1);
        assert_eq!(capture.records, 5);
        assert_eq!(drops(&capture, Reason::Unreadable), 2, "no interface");
        assert_eq!(drops(&capture, Reason::Truncated), 1, "the snapshot length");
        let frames = delivered(&capture);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, odd, "no padding");
        assert_eq!(frames[1], (old.clone(), Duration::from_secs(2)));
    }

    #[test]
    fn pcapng_timestamps_follow_the_interface_resolution() {
        assert_eq!(resolution(&[]), 1_000_000, "microseconds by default");
        let nanos = [InterfaceDescriptionOption::IfTsResol(9)];
        assert_eq!(resolution(&nanos), 1_000_000_000);
        let binary = [InterfaceDescriptionOption::IfTsResol(0x80 | 10)];
        assert_eq!(resolution(&binary), 1024);
        let beyond = [InterfaceDescriptionOption::IfTsResol(12)];
        assert_eq!(resolution(&beyond), 0);
        // A count of 1_500_000 units, as the crate hands it over (in nanoseconds).
        let read = Duration::from_nanos(1_500_000);
        assert_eq!(rescale(read, 1_000_000), Duration::from_millis(1500));
        assert_eq!(rescale(read, 1_000_000_000), read);
        assert_eq!(
            rescale(read, 1024),
            Duration::from_secs_f64(1_500_000.0 / 1024.0)
        );
        assert_eq!(rescale(read, 0), read, "not rescaled");
    }
}
