//! Why the traffic plan could not be installed.

use std::fmt;

use flowtable::TableFull;

/// The traffic plan could not be built or its rules could not be installed.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficError {
    /// The flow table refused a rule the plan needs before any packet flows.
    RuleTableFull {
        /// The rule, e.g. `listen TCP 198.18.0.1:8000 for thread 1` or `exact rule of flow 17`.
        rule: String,
        /// The table's answer.
        full: TableFull,
    },
    /// More flows of one address family than distinct (client, source port) pairs exist.
    TupleSpaceExhausted {
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
        /// Flows of that family the plan asked for.
        flows: u64,
        /// Distinct tuples available.
        capacity: u64,
    },
    /// The configuration cannot describe traffic (values a validated configuration never holds).
    Config(String),
    /// A frame of the plan could not be built.
    Frame(String),
}

impl fmt::Display for TrafficError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficError::RuleTableFull { rule, full } => {
                let raise = if full.ipv6 {
                    "flowtable.ipv6_capacity"
                } else {
                    "flowtable.capacity"
                };
                write!(
                    f,
                    "cannot install {rule}: {full} (raise {raise} or lower traffic.flows)"
                )
            }
            TrafficError::TupleSpaceExhausted {
                family,
                flows,
                capacity,
            } => write!(
                f,
                "traffic.flows: {flows} {family} flows exceed the {capacity} distinct client tuples"
            ),
            TrafficError::Config(msg) => write!(f, "traffic configuration: {msg}"),
            TrafficError::Frame(msg) => write!(f, "cannot build a generator frame: {msg}"),
        }
    }
}

impl std::error::Error for TrafficError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrafficError::RuleTableFull { full, .. } => Some(full),
            _ => None,
        }
    }
}
