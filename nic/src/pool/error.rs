//! Errors of pool creation and buffer length changes.

use std::fmt;

/// Why a pool could not be created or a buffer length could not be set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A pool needs at least one buffer.
    ZeroBuffers,
    /// A buffer needs at least one byte of data room.
    ZeroDataRoom,
    /// `buffers × (header + data room)` does not fit the address space.
    TooLarge {
        /// Requested number of buffers.
        buffers: u32,
        /// Requested data room per buffer.
        data_room: u16,
    },
    /// The allocator refused the pool's memory.
    OutOfMemory {
        /// Bytes requested.
        bytes: usize,
    },
    /// DPDK refused the pool, or made it unlike what the pool relies on (feature `dpdk`).
    Dpdk(String),
    /// A frame length beyond the buffer's data room.
    LenTooLarge {
        /// Requested length.
        len: usize,
        /// The buffer's data room.
        data_room: u16,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::ZeroBuffers => f.write_str("packet pool: buffers must be at least 1, got 0"),
            PoolError::ZeroDataRoom => {
                f.write_str("packet pool: data room must be 1..=65535 bytes, got 0")
            }
            PoolError::TooLarge { buffers, data_room } => write!(
                f,
                "packet pool: {buffers} buffers of {data_room} bytes do not fit the address space"
            ),
            PoolError::OutOfMemory { bytes } => {
                write!(f, "packet pool: cannot allocate {bytes} bytes")
            }
            PoolError::Dpdk(why) => write!(f, "packet pool in DPDK memory: {why}"),
            PoolError::LenTooLarge { len, data_room } => write!(
                f,
                "packet buffer: length must be at most the data room of {data_room} bytes, got {len}"
            ),
        }
    }
}

impl std::error::Error for PoolError {}
