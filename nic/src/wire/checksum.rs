//! The Internet checksum (RFC 1071): ones'-complement sums, pseudo-headers and incremental
//! updates (RFC 1624).
//!
//! Sums are carried as folded 16-bit ones'-complement values (`u16`), so partial sums over separate
//! pieces (pseudo-header, header, payload) combine with [`add`]. A piece of odd length is padded
//! with one zero byte, which is only correct for the *last* piece of a sum: every piece before it
//! must have even length (all headers do).
//!
//! Costs: [`sum`] is O(bytes) with one 64-bit add per 4 bytes and a fold at the end; everything
//! else is O(1). Folding of a non-zero input never yields 0x0000 (only 0xffff, "negative zero"),
//! which the incremental update relies on to agree bit for bit with a full recomputation.

/// The folded ones'-complement sum of `bytes` taken as big-endian 16-bit words; an odd trailing
/// byte is the high half of a last word whose low half is zero.
pub(crate) fn sum(bytes: &[u8]) -> u16 {
    let mut total: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for word in &mut words {
        // A u64 cannot overflow here: it would take 2^32 four-byte words.
        total += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    total += u64::from(u32::from_be_bytes(tail));
    fold(total)
}

/// Folds a wide sum to 16 bits with end-around carry.
fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    // The loop leaves at most 0xffff.
    total as u16
}

/// Ones'-complement addition of two folded sums.
pub(crate) fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The checksum field value for a folded sum that did not include the field (field taken as 0).
pub(crate) fn finish(sum: u16) -> u16 {
    !sum
}

/// The sum of the IPv4 pseudo-header (RFC 793 / RFC 768): addresses, protocol, L4 length.
pub(crate) fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u16) -> u16 {
    let mut words = [0u8; 12];
    words[0..4].copy_from_slice(src);
    words[4..8].copy_from_slice(dst);
    words[9] = proto;
    words[10..12].copy_from_slice(&l4_len.to_be_bytes());
    sum(&words)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): addresses, upper-layer length, next header.
pub(crate) fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u16 {
    let mut words = [0u8; 40];
    words[0..16].copy_from_slice(src);
    words[16..32].copy_from_slice(dst);
    words[32..36].copy_from_slice(&l4_len.to_be_bytes());
    words[39] = proto;
    sum(&words)
}

/// RFC 1624 eqn. 3: the checksum after data whose folded sum was `old_sum` became data whose
/// folded sum is `new_sum`, given the stored checksum `checksum`: `~(~HC + ~m + m')`.
///
/// `old_sum` and `new_sum` must cover the same 16-bit-aligned span of the checksummed data.
pub(crate) fn update(checksum: u16, old_sum: u16, new_sum: u16) -> u16 {
    !add(add(!checksum, !old_sum), new_sum)
}
