//! The error returned when a ring cannot be built with the requested capacity.

use std::error::Error;
use std::fmt;

/// The requested capacity is 0 or larger than the ring can represent for its element type
/// (see [`max_capacity`](crate::max_capacity)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityError {
    requested: usize,
    max: usize,
}

impl CapacityError {
    pub(crate) fn new(requested: usize, max: usize) -> Self {
        CapacityError { requested, max }
    }

    /// The capacity that was asked for.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// The largest capacity the ring accepts for this element type.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ring capacity must be 1..={}, got {}",
            self.max, self.requested
        )
    }
}

impl Error for CapacityError {}
