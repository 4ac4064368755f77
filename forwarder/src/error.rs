//! Why a run could not start or finish.

/// Why a run could not start or finish.
#[derive(Debug)]
pub enum EngineError {
    /// A component could not be built; the message says which and why.
    Setup(String),
    /// A stack thread failed.
    Thread(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Setup(msg) => write!(f, "setup failed: {msg}"),
            EngineError::Thread(msg) => write!(f, "stack thread failed: {msg}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Maps a component's error to a setup error that names the component.
pub(crate) fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> EngineError + '_ {
    move |e| EngineError::Setup(format!("{what}: {e}"))
}
