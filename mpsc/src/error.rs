//! The error returned when a ring cannot be built with the requested capacity.

use std::error::Error;
use std::fmt;

use crate::RingKind;

/// The requested capacity is 0 or larger than the chosen [`RingKind`] can represent
/// (see [`RingKind::max_capacity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityError {
    requested: usize,
    max: usize,
    kind: RingKind,
}

impl CapacityError {
    pub(crate) fn new(requested: usize, max: usize, kind: RingKind) -> Self {
        CapacityError {
            requested,
            max,
            kind,
        }
    }

    /// The capacity that was asked for.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// The largest capacity the kind accepts for this element type.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The kind that rejected the capacity.
    pub fn kind(&self) -> RingKind {
        self.kind
    }
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ring capacity must be 1..={} for the {} ring, got {}",
            self.max, self.kind, self.requested
        )
    }
}

impl Error for CapacityError {}
