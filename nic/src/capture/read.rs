//! Reading a capture file once, at start, into one list of frames per receive queue.
//!
//! The format is told by the first four bytes: a pcapng Section Header Block, or one of the
//! classic pcap magic numbers (either byte order, micro- or nanosecond timestamps); the records
//! are parsed by the `pcap-file` crate. Each record is either kept, on the queue soft RSS
//! chooses for it, or counted as a drop by reason ([`Reason`]). A record the reader cannot
//! frame (a cut-off file, a length field beyond the format's limits) ends the reading: the
//! formats have no marker to find the next record by, so it counts as one unreadable record and
//! what follows it is not seen.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

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

/// Reads the capture at `path` and splits its frames over `rss`'s queues.
///
/// Errors: the file cannot be opened or read, is neither pcap nor pcapng, its header cannot be
/// parsed, or its frames exceed [`MAX_CAPTURE_BYTES`].
pub(super) fn read(path: &Path, rss: &SoftRss, data_room: usize) -> Result<Capture, CaptureError> {
    let file = File::open(path).map_err(CaptureError::Open)?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    reader
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
        },
        held: 0,
        first: None,
    };
    let whole = std::io::Cursor::new(magic).chain(reader);
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

fn read_pcap(input: impl Read, splitter: &mut Splitter<'_>) -> Result<(), CaptureError> {
    let mut reader = PcapReader::new(input)
        .map_err(|e| CaptureError::Format(format!("pcap file header: {e}")))?;
    let ethernet = reader.header().datalink == DataLink::ETHERNET;
    while let Some(packet) = reader.next_packet() {
        match packet {
            Ok(packet) => {
                splitter.record(ethernet, &packet.data, packet.orig_len, packet.timestamp)?
            }
            Err(e) => {
                splitter.unreadable(format!("pcap record: {e}"));
                break;
            }
        }
    }
    Ok(())
}

/// pcapng: Enhanced and Simple Packet Blocks are records (a Simple one belongs to interface 0
/// and takes the timestamp of the record before it); every other block describes the capture.
fn read_pcapng(input: impl Read, splitter: &mut Splitter<'_>) -> Result<(), CaptureError> {
    let mut reader = PcapNgReader::new(input)
        .map_err(|e| CaptureError::Format(format!("pcapng section header: {e}")))?;
    let mut last = Duration::ZERO;
    // Per interface of the current section: Ethernet or not, timestamp units per second. The
    // reader adds an interface as it returns its description block (and a section header
    // clears them), so the table is read again after those.
    let mut interfaces: Vec<(bool, u32)> = Vec::new();
    let mut stale = true;
    loop {
        if stale {
            interfaces = reader
                .interfaces()
                .iter()
                .map(|i| (i.linktype == DataLink::ETHERNET, resolution(&i.options)))
                .collect();
            stale = false;
        }
        let Some(block) = reader.next_block() else {
            return Ok(());
        };
        match block {
            Ok(Block::EnhancedPacket(epb)) => {
                let Some(&(ethernet, per_second)) = interfaces.get(epb.interface_id as usize)
                else {
                    splitter.drop(0, Reason::Unreadable);
                    continue;
                };
                last = rescale(epb.timestamp, per_second);
                splitter.record(ethernet, &epb.data, epb.original_len, last)?;
            }
            Ok(Block::SimplePacket(spb)) => {
                let Some(&(ethernet, _)) = interfaces.first() else {
                    splitter.drop(0, Reason::Unreadable);
                    continue;
                };
                splitter.record(ethernet, &spb.data, spb.original_len, last)?;
            }
            Ok(Block::InterfaceDescription(_) | Block::SectionHeader(_)) => stale = true,
            Ok(_) => {}
            Err(e) => {
                splitter.unreadable(format!("pcapng block: {e}"));
                return Ok(());
            }
        }
    }
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
mod tests {
    use super::*;

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
