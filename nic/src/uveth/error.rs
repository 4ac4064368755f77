//! Errors of the user-space NIC.

use std::fmt;

use crate::rss::RssError;

/// Why a [`Uveth`](super::Uveth) could not be built or a queue could not be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UvethError {
    /// The queue count is not in `1..=MAX_QUEUES`.
    Queues {
        /// Requested queue count.
        queues: u16,
    },
    /// The ring size is not a power of two in `1..=MAX_RING_SIZE`.
    RingSize {
        /// Requested ring size.
        ring_size: usize,
    },
    /// `queues × ring_size` exceeds `MAX_RING_SLOTS` (the rings' memory would be unreasonable).
    RingMemory {
        /// Requested queue count.
        queues: u16,
        /// Requested ring size.
        ring_size: usize,
    },
    /// The soft RSS configuration is invalid.
    Rss(RssError),
    /// A queue index at or beyond the queue count.
    QueueOutOfRange {
        /// Requested queue.
        queue: u16,
        /// Queue count.
        queues: u16,
    },
    /// The queue pair is held by another owner.
    QueueTaken {
        /// Requested queue.
        queue: u16,
    },
}

impl fmt::Display for UvethError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UvethError::Queues { queues } => write!(
                f,
                "uveth: queues must be 1..={}, got {queues}",
                super::MAX_QUEUES
            ),
            UvethError::RingSize { ring_size } => write!(
                f,
                "uveth: ring size must be a power of two in 1..={}, got {ring_size}",
                super::MAX_RING_SIZE
            ),
            UvethError::RingMemory { queues, ring_size } => write!(
                f,
                "uveth: queues × ring size must be at most {}, got {queues} × {ring_size}",
                super::MAX_RING_SLOTS
            ),
            UvethError::Rss(error) => write!(f, "uveth: {error}"),
            UvethError::QueueOutOfRange { queue, queues } => {
                write!(f, "uveth: queue must be 0..{queues}, got {queue}")
            }
            UvethError::QueueTaken { queue } => {
                write!(f, "uveth: queue {queue} is already taken")
            }
        }
    }
}

impl std::error::Error for UvethError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UvethError::Rss(error) => Some(error),
            _ => None,
        }
    }
}

impl From<RssError> for UvethError {
    fn from(error: RssError) -> Self {
        UvethError::Rss(error)
    }
}

/// Why [`Uveth::inject`](super::Uveth::inject) dropped a frame; every case is counted in the
/// queue's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// The receive ring of the queue soft RSS chose is full.
    RingFull {
        /// The chosen queue.
        queue: u16,
    },
    /// The cache and its pool have no free buffer.
    NoBuffer {
        /// The chosen queue.
        queue: u16,
    },
    /// The frame is longer than a buffer's data room.
    FrameTooLarge {
        /// The chosen queue.
        queue: u16,
        /// Frame length.
        len: usize,
        /// The pool's data room.
        data_room: u16,
    },
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectError::RingFull { queue } => {
                write!(f, "uveth: receive ring of queue {queue} is full")
            }
            InjectError::NoBuffer { queue } => {
                write!(f, "uveth: no free buffer for a frame to queue {queue}")
            }
            InjectError::FrameTooLarge {
                queue,
                len,
                data_room,
            } => write!(
                f,
                "uveth: frame for queue {queue} must be at most {data_room} bytes, got {len}"
            ),
        }
    }
}

impl std::error::Error for InjectError {}
