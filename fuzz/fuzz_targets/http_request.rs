//! The `http` app's request parser (`flowsteer_stack::apps::http::parse_head`) on arbitrary
//! bytes, as the app calls it on what a connection received: no panic; a complete head lies
//! within the bytes and the limits; the head alone parses to the same head (what follows it,
//! a body or a pipelined request, does not change it); and the response written for it, or
//! for the refusal, parses back as one HTTP/1.1 response whose length is right.
#![no_main]

use flowsteer_stack::apps::http::{parse_head, write_response, Head, MAX_BODY, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

const BODY: &[u8] = b"hello from flowsteer\n";

fuzz_target!(|bytes: &[u8]| {
    match parse_head(bytes) {
        Ok(Some(head)) => {
            assert!(head.len > 0 && head.len <= bytes.len() && head.len <= MAX_HEAD);
            assert!(head.body <= MAX_BODY);
            assert_eq!(parse_head(&bytes[..head.len]), Ok(Some(head)));
            check_response((200, "OK"), BODY, head);
        }
        Ok(None) => assert!(bytes.len() < MAX_HEAD, "a partial head is bounded"),
        Err(refusal) => {
            let status = refusal.status();
            let text = format!("{} {}\n", status.0, status.1);
            let closing = Head {
                len: 0,
                body: 0,
                keep_alive: false,
                head_only: false,
            };
            check_response(status, text.as_bytes(), closing);
        }
    }
});

fn check_response(status: (u16, &str), body: &[u8], head: Head) {
    let mut out = Vec::new();
    write_response(&mut out, status, body, head.keep_alive, head.head_only);
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(&out) else {
        panic!("the response is one complete head");
    };
    assert_eq!(response.code, Some(status.0));
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).expect("ASCII"));
    assert_eq!(length, Some(body.len().to_string().as_str()));
    let sent = if head.head_only { &[][..] } else { body };
    assert_eq!(&out[len..], sent);
}
