//! Bounds-checked big-endian field access, so header code cannot index out of range.
//!
//! Every read returns `None` past the end of the slice instead of panicking; writes go through
//! `get_mut` and report whether the field fit. Each call is a length compare plus a 2- or 4-byte
//! load or store.

/// The big-endian `u16` at `at`, or `None` when the slice ends first.
#[inline]
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([field[0], field[1]]))
}

/// The big-endian `u32` at `at`, or `None` when the slice ends first.
#[inline]
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    read_array(bytes, at).map(u32::from_be_bytes)
}

/// The byte at `at`, or `None` when the slice ends first.
#[inline]
pub(crate) fn read_u8(bytes: &[u8], at: usize) -> Option<u8> {
    bytes.get(at).copied()
}

/// The `N` bytes at `at`, or `None` when the slice ends first.
#[inline]
pub(crate) fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Writes `value` big-endian at `at`; `false` (and nothing written) when it does not fit.
#[inline]
pub(crate) fn write_u16(bytes: &mut [u8], at: usize, value: u16) -> bool {
    write_bytes(bytes, at, &value.to_be_bytes())
}

/// Writes `value` big-endian at `at`; `false` (and nothing written) when it does not fit.
#[inline]
pub(crate) fn write_u32(bytes: &mut [u8], at: usize, value: u32) -> bool {
    write_bytes(bytes, at, &value.to_be_bytes())
}

/// Copies `value` to `at`; `false` (and nothing written) when it does not fit.
#[inline]
pub(crate) fn write_bytes(bytes: &mut [u8], at: usize, value: &[u8]) -> bool {
    let Some(end) = at.checked_add(value.len()) else {
        return false;
    };
    match bytes.get_mut(at..end) {
        Some(field) => {
            field.copy_from_slice(value);
            true
        }
        None => false,
    }
}
