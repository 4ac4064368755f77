use std::ffi::CStr;
use std::fmt;

use crate::ffi;

/// A failed DPDK call: which operation, the errno value and DPDK's text for it
/// (`rte_strerror`, which also knows the EAL's own codes such as `E_RTE_NO_CONFIG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    op: &'static str,
    code: i32,
    message: String,
}

impl Error {
    /// An error whose code is the calling thread's `rte_errno`, read right after the failed call
    /// (any later DPDK call on this thread may overwrite it).
    pub(crate) fn last(op: &'static str) -> Self {
        // SAFETY: reads the calling thread's TLS rte_errno; no precondition.
        let code = unsafe { ffi::dpdk_sys_errno() };
        Self::from_code(op, code)
    }

    /// An error from a DPDK return value of `-errno` or an errno value (the sign is dropped).
    pub(crate) fn from_code(op: &'static str, code: i32) -> Self {
        let code = code.saturating_abs();
        Error {
            op,
            code,
            message: strerror(code),
        }
    }

    /// An error detected on the Rust side before calling DPDK (bad argument, wrong state).
    pub(crate) fn invalid(op: &'static str, message: String) -> Self {
        Error {
            op,
            code: EINVAL,
            message,
        }
    }

    /// The DPDK function or wrapper that failed, e.g. `"rte_hash_create"`.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The positive errno value (`EINVAL` for arguments refused before calling DPDK).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// DPDK's description of the error, or what was wrong with the argument.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// DPDK's text for the errno value `code` (`rte_strerror`): the C library's text for system
/// codes, DPDK's own for the EAL's codes from `E_RTE_SECONDARY` on (`E_RTE_NO_CONFIG`: "Missing
/// rte_config structure"). The sign is ignored. Needs no EAL; thread-safe (DPDK formats unknown
/// codes in a per-thread buffer, copied here at once).
pub fn strerror(code: i32) -> String {
    let code = code.saturating_abs();
    // SAFETY: rte_strerror accepts any int and returns a pointer to a NUL-terminated string,
    // static or in a per-thread buffer, valid until the next call on this thread; it is copied
    // before anything else runs on this thread.
    unsafe {
        let text = ffi::rte_strerror(code);
        if text.is_null() {
            format!("unknown error {code}")
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    }
}

/// EINVAL without a libc dependency: 22 on every Linux architecture DPDK supports.
const EINVAL: i32 = 22;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (errno {})", self.op, self.message, self.code)
    }
}

impl std::error::Error for Error {}
