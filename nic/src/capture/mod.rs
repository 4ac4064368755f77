//! A capture file as the port: the frames of a .pcap or .pcapng file replayed into the receive
//! queues, spread by software RSS as a NIC with the same key and redirection table would, so a
//! user can see what each thread would do with a trace, and tests can run corpora.
//!
//! # Reading: once, at start, into memory
//!
//! [`CapturePort::open`] reads the whole file before any thread starts and splits it into one
//! list of frames per queue (`read`): each queue's owner then replays its own list with no lock
//! and no reader to wait for, and the run's accounting is exact from the start (every record is
//! a frame of one queue or a counted drop). The cost is memory: the frames' bytes plus about 40
//! bytes per frame, held for the run; a capture whose frames exceed [`MAX_CAPTURE_BYTES`] is
//! refused (split it with `editcap -c`). Reading costs one Toeplitz hash and one copy per
//! frame, before the run's clock starts.
//!
//! # Replay
//!
//! [`Pace::Full`]: each receive burst takes the queue's next frames as fast as the thread asks.
//! [`Pace::Capture`]: a frame is handed over once the time since the replay began (the first
//! receive burst of any queue) reaches its offset from the capture's first record, so the
//! queues keep the capture's own timing and mix; the spacing within one burst is not kept.
//! A frame that finds no free buffer waits for the next burst: a replay loses nothing to a
//! slow thread, so two replays of one capture see the same frames.
//!
//! What the port transmits (a stack's answers) is counted and freed at once: there is no wire.
//!
//! # Drops
//!
//! Records that are not delivered are counted per queue and reason ([`PortControl::drops`]):
//! `capture_not_ethernet` (the link type is not Ethernet; queue 0), `capture_truncated` (fewer
//! bytes captured than on the wire), `capture_oversize` (more than a buffer's data room), both
//! on the queue RSS chooses from the captured bytes, and `capture_unreadable` (a record the
//! parser could not frame, which ends the reading, or a packet of an undescribed interface;
//! queue 0). Delivered frames plus these drops equal the records read.
//!
//! A record is a classic pcap record or a pcapng Enhanced, Simple or (obsolete) Packet Block.
//! Other pcapng blocks carry no frame and are neither records nor drops: those that describe
//! the capture (section headers, interfaces, name resolution, statistics) are read or passed
//! over, and those of a type the reader does not know are skipped, as the format asks, and
//! counted in [`CapturePort::unknown_blocks`], which the port's description shows.
//!
//! The fuzz target `capture` (`fuzz/`) checks all of this on arbitrary bytes against a
//! reference reading of the formats.
//!
//! # End
//!
//! [`PortControl::exhausted`] turns true once every queue has returned its last frame: the
//! engine then stops the run, and its shutdown processes what is in flight.

mod read;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::pool::{PktBuf, PoolCache};
use crate::port::{mac_text, Port, PortControl, QueuePair};
use crate::rss::{RssError, SoftRss};
use read::{Capture, Reason};

/// Most bytes of frames a capture may hold: the replay keeps them all in memory.
pub const MAX_CAPTURE_BYTES: u64 = 1 << 30;

/// How fast a capture is replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the threads take frames.
    #[default]
    Full,
    /// At the capture's own timing, from the first receive burst on.
    Capture,
}

/// Configuration of a [`CapturePort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The .pcap or .pcapng file.
    pub path: PathBuf,
    /// Receive queues the frames are spread over.
    pub queues: u16,
    /// Toeplitz key of the soft RSS.
    pub rss_key: [u8; 40],
    /// Redirection table entries (see [`SoftRss::new`]).
    pub reta_size: usize,
    /// The port's MAC address (what the stacks answer from).
    pub mac: [u8; 6],
    /// Replay speed.
    pub pace: Pace,
    /// The buffers' data room: longer frames are dropped as oversize.
    pub data_room: u16,
}

/// Why a capture could not be opened.
#[derive(Debug)]
pub enum CaptureError {
    /// The file could not be opened.
    Open(std::io::Error),
    /// The file is not a capture this port reads, or its header is damaged.
    Format(String),
    /// The frames exceed what the replay holds in memory.
    TooLarge {
        /// [`MAX_CAPTURE_BYTES`].
        limit: u64,
    },
    /// The queues and table size do not make a redirection table.
    Rss(RssError),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Open(e) => write!(f, "cannot open: {e}"),
            CaptureError::Format(why) => f.write_str(why),
            CaptureError::TooLarge { limit } => write!(
                f,
                "its frames exceed the {} MiB a replay holds in memory (split it, e.g. \
                 editcap -c 1000000)",
                limit >> 20
            ),
            CaptureError::Rss(e) => write!(f, "software RSS: {e}"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// What the port and its queues share.
struct Shared {
    capture: Capture,
    /// Per queue, frames handed over so far (written by the queue's owner only).
    delivered: Vec<AtomicUsize>,
    /// Per queue, frames transmitted (and freed).
    transmitted: Vec<AtomicU64>,
    /// Per queue, frames the pool's buffers turned out too small for at delivery.
    late_oversize: Vec<AtomicU64>,
    taken: Vec<AtomicBool>,
    pace: Pace,
    began: OnceLock<Instant>,
}

/// A capture file replayed as a port with `queues` receive queues. See the module documentation.
pub struct CapturePort {
    shared: Arc<Shared>,
    rss: SoftRss,
    mac: [u8; 6],
    path: PathBuf,
}

impl CapturePort {
    /// Reads the capture `config.path` names and splits it over the queues.
    ///
    /// Errors: see [`CaptureError`]. A damaged record is not an error: it ends the reading and
    /// is counted as a drop.
    pub fn open(config: &CaptureConfig) -> Result<CapturePort, CaptureError> {
        let file = File::open(&config.path).map_err(CaptureError::Open)?;
        CapturePort::from_reader(config, file)
    }

    /// [`open`](Self::open) for a capture `input` holds rather than the file `config.path`
    /// names (which then only names it in the description): a capture in memory, such as the
    /// fuzz target's.
    pub fn from_reader(
        config: &CaptureConfig,
        input: impl Read,
    ) -> Result<CapturePort, CaptureError> {
        let rss = SoftRss::new(&config.rss_key, config.reta_size, config.queues)
            .map_err(CaptureError::Rss)?;
        let capture = read::read(input, &rss, usize::from(config.data_room))?;
        let queues = usize::from(config.queues);
        Ok(CapturePort {
            shared: Arc::new(Shared {
                capture,
                delivered: (0..queues).map(|_| AtomicUsize::new(0)).collect(),
                transmitted: (0..queues).map(|_| AtomicU64::new(0)).collect(),
                late_oversize: (0..queues).map(|_| AtomicU64::new(0)).collect(),
                taken: (0..queues).map(|_| AtomicBool::new(false)).collect(),
                pace: config.pace,
                began: OnceLock::new(),
            }),
            rss,
            mac: config.mac,
            path: config.path.clone(),
        })
    }

    /// The file replayed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records read from the file: frames to deliver plus the records dropped.
    pub fn records(&self) -> u64 {
        self.shared.capture.records
    }

    /// Frames each queue delivers over the whole replay.
    pub fn frames_per_queue(&self) -> Vec<usize> {
        let queues = &self.shared.capture.queues;
        queues.iter().map(|q| q.frames.len()).collect()
    }

    /// Frames transmitted on each queue so far (freed at once).
    pub fn transmitted(&self) -> Vec<u64> {
        let sent = &self.shared.transmitted;
        sent.iter().map(|t| t.load(Ordering::Relaxed)).collect()
    }

    /// Why the reading stopped before the end of the file, if it did.
    pub fn stopped_early(&self) -> Option<&str> {
        self.shared.capture.stopped.as_deref()
    }

    /// pcapng blocks of a type the reader does not know, skipped: they carry no frame it could
    /// replay, so they are neither records nor drops.
    pub fn unknown_blocks(&self) -> u64 {
        self.shared.capture.unknown_blocks
    }
}

impl PortControl for CapturePort {
    fn queues(&self) -> u16 {
        self.shared.capture.queues.len() as u16
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn describe(&self) -> String {
        let frames: usize = self.frames_per_queue().iter().sum();
        let pace = match self.shared.pace {
            Pace::Full => "full speed",
            Pace::Capture => "the capture's pace",
        };
        let mut text = format!(
            "capture {}, {}, {} records, {frames} frames to replay at {pace}, mac {}",
            self.path.display(),
            crate::port::queues_text(self.queues()),
            self.records(),
            mac_text(self.mac)
        );
        let unknown = self.unknown_blocks();
        if unknown > 0 {
            text.push_str(&format!(
                "; pcapng blocks of unknown types skipped: {unknown}"
            ));
        }
        if let Some(why) = self.stopped_early() {
            text.push_str(&format!("; reading stopped early: {why}"));
        }
        text
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        let shared = &self.shared;
        shared
            .capture
            .drops
            .iter()
            .zip(&shared.late_oversize)
            .map(|(counts, late)| {
                Reason::ALL
                    .iter()
                    .zip(counts)
                    .map(|(reason, count)| {
                        let late = if *reason == Reason::Oversize {
                            late.load(Ordering::Relaxed)
                        } else {
                            0
                        };
                        (reason.name(), count + late)
                    })
                    .collect()
            })
            .collect()
    }

    fn rss(&self) -> Option<&SoftRss> {
        Some(&self.rss)
    }

    fn exhausted(&self) -> bool {
        let shared = &self.shared;
        shared
            .capture
            .queues
            .iter()
            .zip(&shared.delivered)
            .all(|(queue, delivered)| delivered.load(Ordering::Acquire) == queue.frames.len())
    }
}

impl Port for CapturePort {
    type Queue = CaptureQueue;
    type Error = CaptureQueueError;

    /// Queue `queue`, resuming where a previous owner stopped.
    fn take_queue(&self, queue: u16) -> Result<CaptureQueue, CaptureQueueError> {
        let taken =
            self.shared
                .taken
                .get(usize::from(queue))
                .ok_or(CaptureQueueError::OutOfRange {
                    queue,
                    queues: self.queues(),
                })?;
        // Acquire pairs with the release in `CaptureQueue::drop`: the next owner resumes from
        // what the previous one delivered.
        if taken.swap(true, Ordering::AcqRel) {
            return Err(CaptureQueueError::Taken { queue });
        }
        let next = self.shared.delivered[usize::from(queue)].load(Ordering::Acquire);
        Ok(CaptureQueue {
            shared: self.shared.clone(),
            queue,
            next,
        })
    }
}

/// Why a capture queue could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureQueueError {
    /// No such queue.
    OutOfRange {
        /// The queue asked for.
        queue: u16,
        /// Queues the port has.
        queues: u16,
    },
    /// A live owner holds it.
    Taken {
        /// The queue asked for.
        queue: u16,
    },
}

impl fmt::Display for CaptureQueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureQueueError::OutOfRange { queue, queues } => {
                write!(f, "queue {queue} out of range (the capture has {queues})")
            }
            CaptureQueueError::Taken { queue } => write!(f, "queue {queue} is already taken"),
        }
    }
}

impl std::error::Error for CaptureQueueError {}

/// One receive queue of a [`CapturePort`]: its frames of the capture, replayed in order.
pub struct CaptureQueue {
    shared: Arc<Shared>,
    queue: u16,
    /// Index of the next frame to hand over.
    next: usize,
}

impl QueuePair for CaptureQueue {
    /// The queue's next frames, up to `max`; with [`Pace::Capture`], only those whose time
    /// has come. Stops early when the cache has no buffer (the frame waits for the next burst).
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let shared = &*self.shared;
        let q = usize::from(self.queue);
        let queue = &shared.capture.queues[q];
        if self.next >= queue.frames.len() {
            return 0;
        }
        let due = match shared.pace {
            Pace::Full => Duration::MAX,
            Pace::Capture => shared.began.get_or_init(Instant::now).elapsed(),
        };
        let mut delivered = 0;
        while delivered < max {
            let Some(frame) = queue.frames.get(self.next) else {
                break;
            };
            if frame.at > due {
                break;
            }
            let Some(mut buf) = cache.alloc() else {
                break;
            };
            self.next += 1;
            if buf.write_frame(queue.data(frame)).is_err() {
                // The pool's buffers are smaller than the data room the capture was split for.
                cache.free(buf);
                shared.late_oversize[q].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            buf.set_rss_hash(frame.hash);
            out.push(buf);
            delivered += 1;
        }
        // Release pairs with the acquire in `exhausted`: once it reads the last index, these
        // frames are the caller's.
        shared.delivered[q].store(self.next, Ordering::Release);
        delivered
    }

    /// Counts and frees every frame: a replay has no wire to send on.
    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let sent = pkts.len();
        cache.free_bulk(pkts);
        self.shared.transmitted[usize::from(self.queue)].fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl Drop for CaptureQueue {
    fn drop(&mut self) {
        // Release pairs with the acquire in `take_queue`.
        self.shared.taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

impl fmt::Debug for CaptureQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureQueue")
            .field("queue", &self.queue)
            .field("next", &self.next)
            .finish()
    }
}

impl fmt::Debug for CapturePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturePort")
            .field("path", &self.path)
            .field("queues", &self.queues())
            .field("records", &self.records())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::read::tests::frame;
    use super::*;
    use crate::pool::PacketPool;
    use crate::rss::MICROSOFT_KEY;
    use flowsteer_testrig::pcap::{encode, Record};

    #[test]
    fn every_record_is_replayed_once_or_counted_and_the_end_is_seen() {
        let path = std::env::temp_dir().join(format!("flowsteer-nic-{}.pcap", std::process::id()));
        let mut records: Vec<Record> = (0..20).map(|n| Record::whole(frame(n, 64))).collect();
        records.push(Record::truncated(&frame(99, 64), 30));
        records.push(Record::whole(frame(98, 300)));
        std::fs::write(&path, encode(&records)).unwrap();
        let port = CapturePort::open(&CaptureConfig {
            path: path.clone(),
            queues: 2,
            rss_key: MICROSOFT_KEY,
            reta_size: 128,
            mac: [2, 0, 0, 0, 0, 1],
            pace: Pace::Full,
            data_room: 256,
        });
        std::fs::remove_file(&path).ok();
        let port = port.unwrap();
        assert_eq!(port.records(), 22);
        let drops = port.drops();
        let dropped: u64 = drops.iter().flatten().map(|(_, n)| n).sum();
        assert_eq!(dropped, 2, "{drops:?}");
        assert_eq!(port.frames_per_queue().iter().sum::<usize>(), 20);
        assert!(!port.exhausted());

        let pool = PacketPool::new(64, 256).unwrap();
        let mut cache = pool.cache(8);
        let mut out = Vec::new();
        let mut received = 0;
        for q in 0..2 {
            let mut queue = port.take_queue(q).unwrap();
            assert_eq!(
                port.take_queue(q).unwrap_err(),
                CaptureQueueError::Taken { queue: q }
            );
            // Small bursts, each freed before the next: the queue resumes where it stopped.
            while queue.rx_burst(&mut cache, &mut out, 3) > 0 {
                received += out.len();
                cache.free_bulk(&mut out);
            }
            assert_eq!(queue.tx_burst(&mut cache, &mut Vec::new()), 0);
        }
        assert_eq!(received, 20);
        assert!(port.exhausted());
        assert!(port.take_queue(2).is_err());
    }
}
