//! DPDK's software Toeplitz hash (`rte_softrss` from `rte_thash.h`), the reference flowsteer's
//! own software RSS is measured against.
//!
//! Input is a tuple of host-order 32-bit words as in `struct rte_ipv4_tuple`: source address,
//! destination address, then `(source port << 16) | destination port`; IPv6 is 4 + 4 + 1 words.
//! The key is the 40-byte RSS key as a NIC takes it (network order, e.g. the Microsoft key).
//!
//! Also the names of the RSS flow types a port can hash ([`flow_types`], [`flow_type_names`]),
//! for `flow_type_rss_offloads` and `rss_hf` masks.

use std::ffi::CStr;
use std::sync::OnceLock;

use crate::{ffi, Error};

/// The RSS flow types of DPDK 22.11 (`RTE_ETH_RSS_*` of `rte_ethdev.h`), each with the name
/// testpmd gives it (`ipv4`, `ipv4-frag`, `ipv4-tcp`, ..., `ipv6-udp`, ..., `l3-src-only`) and
/// its bit, in testpmd's order; the bits come from the headers through the C shim. Group names
/// (`ip`, `tcp`, `all`) are not listed. Needs no EAL; built once.
pub fn flow_types() -> &'static [(&'static str, u64)] {
    static TYPES: OnceLock<Vec<(&'static str, u64)>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut types = Vec::new();
        for index in 0.. {
            let mut bit = 0u64;
            // SAFETY: the shim reads its static table; bit is a valid out-parameter.
            let name = unsafe { ffi::dpdk_sys_rss_flow_type(index, &mut bit) };
            if name.is_null() {
                break;
            }
            // SAFETY: a non-NULL name points to a string literal of the shim: NUL-terminated,
            // static, ASCII.
            let name = unsafe { CStr::from_ptr(name) };
            types.push((name.to_str().unwrap_or("?"), bit));
        }
        types
    })
}

/// The names of the flow types set in `mask` (a port's `flow_type_rss_offloads`, an `rss_hf`),
/// in [`flow_types`] order, then `bit N` for each bit no type names (such as the
/// `RTE_ETH_RSS_LEVEL_*` bits 50 and 51). Empty for 0: the port has no RSS.
pub fn flow_type_names(mask: u64) -> Vec<String> {
    let mut named = 0u64;
    let mut names: Vec<String> = flow_types()
        .iter()
        .filter(|&&(_, bit)| mask & bit == bit && bit != 0)
        .map(|&(name, bit)| {
            named |= bit;
            name.to_owned()
        })
        .collect();
    let rest = mask & !named;
    names.extend(
        (0..64)
            .filter(|bit| rest & (1u64 << bit) != 0)
            .map(|bit| format!("bit {bit}")),
    );
    names
}

/// The bit of the flow type testpmd names `name` (`"ipv4-tcp"`), if [`flow_types`] has it.
pub fn flow_type(name: &str) -> Option<u64> {
    flow_types()
        .iter()
        .find(|&&(n, _)| n == name)
        .map(|&(_, bit)| bit)
}

/// The flow types hashed by address pair and ports (TCP and UDP over IPv4 and IPv6, not
/// fragmented).
pub const L4_FLOW_TYPES: [&str; 4] = ["ipv4-tcp", "ipv4-udp", "ipv6-tcp", "ipv6-udp"];

/// The flow types hashed by address pair alone: plain IPv4 and IPv6 (which some drivers read as
/// every IP packet without a more specific type), fragments and other protocols.
pub const L3_FLOW_TYPES: [&str; 6] = [
    "ipv4",
    "ipv4-frag",
    "ipv4-other",
    "ipv6",
    "ipv6-frag",
    "ipv6-other",
];

/// The mask of the flow types `names` ([`flow_type`] of each; an unknown name adds nothing).
pub fn flow_type_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|name| flow_type(name))
        .fold(0, |mask, bit| mask | bit)
}

/// Length of an RSS key: 40 bytes hash tuples of up to [`MAX_TUPLE_WORDS`] words.
pub const KEY_LEN: usize = 40;

/// `rte_softrss` reads `4 * words + 4` key bytes, so a 40-byte key allows 9 words (IPv6 with
/// ports).
pub const MAX_TUPLE_WORDS: usize = KEY_LEN / 4 - 1;

/// The `rte_ipv4_tuple` words of an IPv4 4-tuple (addresses and ports in host order).
pub fn ipv4_tuple(src: u32, dst: u32, sport: u16, dport: u16) -> [u32; 3] {
    [src, dst, (u32::from(sport) << 16) | u32::from(dport)]
}

fn check_words(op: &'static str, words: usize) -> Result<u32, Error> {
    if (1..=MAX_TUPLE_WORDS).contains(&words) {
        Ok(words as u32)
    } else {
        Err(Error::invalid(
            op,
            format!(
                "a tuple must be 1..={MAX_TUPLE_WORDS} words for a {KEY_LEN}-byte key, got {words}"
            ),
        ))
    }
}

/// The Toeplitz hash of one tuple. Cost: one shim call (not inlined) around DPDK's bit loop
/// (32 iterations per word); prefer [`softrss_bulk`] when measuring.
pub fn softrss(tuple: &[u32], key: &[u8; KEY_LEN]) -> Result<u32, Error> {
    let words = check_words("rte_softrss", tuple.len())?;
    // SAFETY: tuple has `words` readable words (rte_softrss takes a non-const pointer but only
    // reads) and key has 4 * words + 4 <= 40 readable bytes.
    Ok(unsafe { ffi::dpdk_sys_softrss(tuple.as_ptr().cast_mut(), words, key.as_ptr()) })
}

/// Hashes `hashes.len()` tuples stored back to back in `tuples` (`words` words each) with one
/// shim call, so the per-call cost is paid once per batch. Fails when `words` is out of range or
/// `tuples` holds fewer than `hashes.len() * words` words.
pub fn softrss_bulk(
    tuples: &[u32],
    words: usize,
    key: &[u8; KEY_LEN],
    hashes: &mut [u32],
) -> Result<(), Error> {
    const OP: &str = "rte_softrss";
    let w = check_words(OP, words)?;
    let n = u32::try_from(hashes.len())
        .map_err(|_| Error::invalid(OP, format!("{} tuples at once", hashes.len())))?;
    if tuples.len() < hashes.len() * words {
        return Err(Error::invalid(
            OP,
            format!(
                "{} hashes of {words}-word tuples need {} words, got {}",
                hashes.len(),
                hashes.len() * words,
                tuples.len()
            ),
        ));
    }
    // SAFETY: tuples holds n * w readable words (checked; only read), key 40 bytes, hashes n
    // writable words.
    unsafe {
        ffi::dpdk_sys_softrss_bulk(
            tuples.as_ptr().cast_mut(),
            w,
            n,
            key.as_ptr(),
            hashes.as_mut_ptr(),
        )
    };
    Ok(())
}
