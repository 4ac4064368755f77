//! The metrics endpoint's request handling (`forwarder::metrics::answer_reads`: reading a
//! request head within its limits, parsing it, answering) on arbitrary bytes arriving in
//! arbitrary reads: no panic; every answer is one complete HTTP/1.1 response with a status the
//! endpoint documents, `Connection: close` and a right `Content-Length`; it does not depend on
//! how the bytes were split into reads.
//!
//! Input: the first byte seeds the read sizes (1 to 1100 bytes, around the endpoint's 1 KiB
//! read buffer), the rest is what the client sends.
#![no_main]

use forwarder::metrics::answer_reads;
use libfuzzer_sys::fuzz_target;

const METRICS: &str =
    "# TYPE flowsteer_rx_packets_total counter\nflowsteer_rx_packets_total{thread=\"0\"} 7\n";
const STATUSES: [u16; 6] = [200, 400, 404, 405, 408, 431];

fuzz_target!(|input: &[u8]| {
    let Some((&seed, sent)) = input.split_first() else {
        return;
    };
    let mut reads = Vec::new();
    let mut rest = sent;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        // A small xorshift: the same split for the same input.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (1 + state % 1100) as usize;
        let (read, tail) = rest.split_at(size.min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    let answer = answer_reads(&reads, METRICS);
    assert_eq!(
        answer,
        answer_reads(&[sent], METRICS),
        "the answer depends on the bytes, not on the reads"
    );

    let bytes = answer.as_bytes();
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(bytes) else {
        panic!("one complete response head: {answer:?}");
    };
    let code = response.code.expect("a status code");
    assert!(STATUSES.contains(&code), "{code}");
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).expect("ASCII"))
    };
    assert_eq!(header("connection"), Some("close"));
    assert_eq!(header("allow").is_some(), code == 405);
    let length: usize = header("content-length")
        .expect("a length")
        .parse()
        .expect("a number");
    let body = &bytes[len..];
    if code == 200 {
        assert_eq!(length, METRICS.len());
        // HEAD: the length of what GET would send, and no body.
        assert!(body == METRICS.as_bytes() || body.is_empty(), "{answer:?}");
    } else {
        assert_eq!(body.len(), length);
    }
});
