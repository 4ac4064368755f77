//! Why a run could not start or finish.

/// Why a run could not start or finish.
#[derive(Debug)]
pub enum EngineError {
    /// A component could not be built; the message says which and why.
    Setup(String),
    /// A stack thread failed.
    Thread(String),
    /// The configuration asks of the device what it cannot do (a DPDK device that does not
    /// exist, more queues than it has, a table size or key it does not take); the message names
    /// the key. The binary exits with 2, as for any configuration that does not fit the host.
    Device(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Setup(msg) => write!(f, "setup failed: {msg}"),
            EngineError::Thread(msg) => write!(f, "stack thread failed: {msg}"),
            EngineError::Device(msg) => {
                write!(f, "the configuration does not fit the device: {msg}")
            }
        }
    }
}

impl std::error::Error for EngineError {}

/// Maps a component's error to a setup error that names the component.
pub(crate) fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> EngineError + '_ {
    move |e| EngineError::Setup(format!("{what}: {e}"))
}
