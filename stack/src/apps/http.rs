//! The HTTP/1.1 part of the `http` app, kept apart from sockets: parsing a request head and
//! writing a response. Pure functions, tested on their own.
//!
//! Enough HTTP for curl, wrk and ab: request heads up to [`MAX_HEAD`] bytes, `Content-Length`
//! bodies (read and dropped), keep-alive by default on HTTP/1.1 and on request on HTTP/1.0,
//! pipelined requests answered in order. Chunked request bodies are refused (501).

/// Largest request head (request line + headers) accepted; a longer one gets 431.
pub const MAX_HEAD: usize = 8192;
/// Largest request body accepted (read and dropped); a longer one gets 413.
pub const MAX_BODY: u64 = 1 << 20;
/// Headers per request.
const MAX_HEADERS: usize = 32;

/// A complete request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including the blank line.
    pub len: usize,
    /// Body bytes that follow the head.
    pub body: u64,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// HEAD request: the response carries no body.
    pub head_only: bool,
}

/// Why a request cannot be served; each maps to a status code, and the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not HTTP/1.x, a broken request line or header: 400.
    BadRequest,
    /// Head larger than [`MAX_HEAD`]: 431.
    HeadTooLarge,
    /// Body larger than [`MAX_BODY`]: 413.
    BodyTooLarge,
    /// Chunked or other transfer codings: 501.
    UnsupportedCoding,
}

impl Refusal {
    /// Status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::BodyTooLarge => (413, "Content Too Large"),
            Refusal::UnsupportedCoding => (501, "Not Implemented"),
        }
    }
}

/// Parses the request head at the start of `buf`: `Ok(None)` until it is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refusal::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Err(_) => return Err(Refusal::BadRequest),
    };
    if len > MAX_HEAD {
        return Err(Refusal::HeadTooLarge);
    }
    let version = request.version.ok_or(Refusal::BadRequest)?;
    let mut keep_alive = version >= 1;
    let mut body = 0u64;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| Refusal::BadRequest)?;
            body = text.trim().parse().map_err(|_| Refusal::BadRequest)?;
            if body > MAX_BODY {
                return Err(Refusal::BodyTooLarge);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Refusal::UnsupportedCoding);
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value;
            if has_token(value, b"close") {
                keep_alive = false;
            } else if has_token(value, b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Some(Head {
        len,
        body,
        keep_alive,
        head_only: request.method == Some("HEAD"),
    }))
}

/// True when the comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// Appends a `200 OK` response with `body` (or a refusal, with a short text body) to `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) {
    use std::io::Write;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: flowsteer\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        status.0,
        status.1,
        body.len(),
        connection
    );
    if !head_only {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curl_request_is_complete_and_keeps_alive() {
        let req =
            b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n";
        let head = parse_head(req).unwrap().unwrap();
        assert_eq!(head.len, req.len());
        assert_eq!(head.body, 0);
        assert!(head.keep_alive);
        assert!(!head.head_only);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n";
        for end in 0..req.len() {
            assert_eq!(parse_head(&req[..end]), Ok(None), "prefix of {end} bytes");
        }
    }

    #[test]
    fn connection_header_and_version_decide_keep_alive() {
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Upgrade\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nConnection: upgrade, CLOSE\r\n\r\n",
                false,
            ),
        ];
        for (req, keep_alive) in cases {
            let head = parse_head(req).unwrap().unwrap();
            assert_eq!(
                head.keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn bodies_are_measured_and_bounded() {
        let head = parse_head(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, 5);
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(Refusal::BodyTooLarge)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: five\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Refusal::UnsupportedCoding)
        );
    }

    #[test]
    fn garbage_and_oversized_heads_are_refused() {
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\x01\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            parse_head(b"GET / SPDY/3\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_head(&long), Err(Refusal::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(Refusal::HeadTooLarge));
    }

    #[test]
    fn head_requests_get_no_body() {
        let head = parse_head(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(head.head_only);
        let mut out = Vec::new();
        write_response(&mut out, (200, "OK"), b"hello\n", true, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 6\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn responses_parse_back() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            Refusal::BadRequest.status(),
            b"bad request\n",
            false,
            false,
        );
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(&out).unwrap() else {
            panic!("incomplete response");
        };
        assert_eq!(response.code, Some(400));
        assert_eq!(&out[len..], b"bad request\n");
        assert!(response
            .headers
            .iter()
            .any(|h| h.name == "Connection" && h.value == b"close"));
    }
}
