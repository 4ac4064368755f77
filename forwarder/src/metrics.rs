//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`.
//!
//! The stack threads never touch a shared counter: at each scrape this module sums the per-thread
//! blocks, publishes the sums through the `metrics` facade into a Prometheus recorder owned by this
//! engine (a local recorder, so several engines in one process do not mix), and renders it.
//!
//! The HTTP side is deliberately small and strict: one request per connection, a 2-second read
//! timeout, an 8 KiB request limit, `GET`/`HEAD` on `/metrics` only. Anything else gets a precise
//! status code (400, 404, 405, 408, 431) and the connection is closed; no input can stop the server.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use flowsteer_nic::wire::UnkeyedReason;

use crate::engine::Shared;
use crate::stats::malformed_reasons;

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` and serves the engine's counters.
    pub fn start(listen: SocketAddr, shared: Arc<Shared>) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {listen} (metrics.listen): {e}"),
            )
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = thread::Builder::new()
            .name("fs-metrics".into())
            .spawn(move || serve(listener, &shared, &stop_flag))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, shared: &Shared, stop: &AtomicBool) {
    let recorder = PrometheusBuilder::new().build_recorder();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // A failing client only loses its own connection.
                let _ = handle(stream, shared, &recorder);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The outcome of reading one request.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics {
        head: bool,
    },
    Reject {
        status: &'static str,
        why: &'static str,
    },
}

fn parse_request(head: &[u8]) -> Request {
    let reject = |status, why| Request::Reject { status, why };
    let Ok(text) = std::str::from_utf8(head) else {
        return reject("400 Bad Request", "request is not UTF-8\n");
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reject("400 Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return reject("400 Bad Request", "unsupported HTTP version\n");
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return reject("405 Method Not Allowed", "only GET and HEAD are served\n"),
    };
    if path != "/metrics" {
        return reject("404 Not Found", "the metrics are at /metrics\n");
    }
    Request::Metrics { head }
}

fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(buf);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(Request::Reject {
                status: "431 Request Header Fields Too Large",
                why: "request head over 8 KiB\n",
            });
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Request::Reject {
                    status: "400 Bad Request",
                    why: "connection closed before the request was complete\n",
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Request::Reject {
                    status: "408 Request Timeout",
                    why: "request not received within 2 seconds\n",
                })
            }
            Err(_) => {
                return Err(Request::Reject {
                    status: "400 Bad Request",
                    why: "read error\n",
                })
            }
        }
    }
}

fn handle(mut stream: TcpStream, shared: &Shared, recorder: &PrometheusRecorder) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let request = match read_head(&mut stream) {
        Ok(head) => parse_request(&head),
        Err(reject) => reject,
    };
    let (status, content_type, body, head_only) = match request {
        Request::Metrics { head } => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(shared, recorder),
            head,
        ),
        Request::Reject { status, why } => {
            (status, "text/plain; charset=utf-8", why.to_string(), false)
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// Sums the per-thread counters into the recorder and renders the Prometheus text.
pub fn render(shared: &Shared, recorder: &PrometheusRecorder) -> String {
    let snapshots = shared.stats.snapshot();
    metrics::with_local_recorder(recorder, || {
        for s in &snapshots {
            let t = s.thread.to_string();
            counter!("flowsteer_rx_packets_total", "thread" => t.clone()).absolute(s.rx);
            counter!("flowsteer_tx_packets_total", "thread" => t.clone()).absolute(s.tx);
            counter!("flowsteer_processed_packets_total", "thread" => t.clone(), "path" => "local")
                .absolute(s.processed_local);
            counter!("flowsteer_processed_packets_total", "thread" => t.clone(), "path" => "handoff")
                .absolute(s.processed_handoff);
            counter!("flowsteer_swq_received_packets_total", "thread" => t.clone())
                .absolute(s.processed_handoff);
            for (to, v) in s.handed_off.iter().enumerate() {
                counter!("flowsteer_handoff_packets_total", "thread" => t.clone(), "to" => to.to_string())
                    .absolute(*v);
            }
            for (to, v) in s.swq_full.iter().enumerate() {
                counter!("flowsteer_swq_full_packets_total", "thread" => t.clone(), "to" => to.to_string())
                    .absolute(*v);
            }
            // Every reason is exported, zeros included, so alerts can be written before the first drop.
            let stats = shared.stats.thread(s.thread);
            for (reason, c) in malformed_reasons().iter().zip(&stats.malformed) {
                counter!("flowsteer_dropped_packets_total", "thread" => t.clone(), "reason" => *reason)
                    .absolute(c.get());
            }
            for (reason, c) in [
                ("swq_full", s.swq_full.iter().sum::<u64>()),
                ("no_owner", stats.no_owner.get()),
                ("owner_invalid", stats.owner_invalid.get()),
                ("tx_full", stats.tx_full.get()),
            ] {
                counter!("flowsteer_dropped_packets_total", "thread" => t.clone(), "reason" => reason)
                    .absolute(c);
            }
            for (reason, c) in UnkeyedReason::ALL.iter().zip(&stats.unkeyed) {
                counter!("flowsteer_unkeyed_packets_total", "thread" => t.clone(), "reason" => reason.as_str())
                    .absolute(c.get());
            }
            counter!("flowsteer_arp_packets_total", "thread" => t.clone()).absolute(s.arp);
            counter!("flowsteer_misdirected_packets_total", "thread" => t.clone())
                .absolute(s.misdirected);
            counter!("flowsteer_unverified_packets_total", "thread" => t.clone())
                .absolute(s.unverified);
            counter!("flowsteer_flows_closed_total", "thread" => t.clone())
                .absolute(s.flows_closed);
            for (result, v) in [
                ("exact", s.lookups.exact),
                ("listen", s.lookups.listen),
                ("listen_any", s.lookups.listen_any),
                ("miss", s.lookups.miss),
            ] {
                counter!("flowsteer_flowtable_lookups_total", "thread" => t.clone(), "result" => result)
                    .absolute(v);
            }
            counter!("flowsteer_idle_polls_total", "thread" => t.clone()).absolute(s.idle_polls);
            counter!("flowsteer_polls_total", "thread" => t.clone()).absolute(s.polls);
        }
        for (q, producer) in shared.queues.iter().enumerate() {
            gauge!("flowsteer_swq_depth_packets", "queue" => q.to_string())
                .set(producer.len() as f64);
        }
        gauge!("flowsteer_flowtable_entries", "kind" => "exact")
            .set(shared.table.exact_len() as f64);
        gauge!("flowsteer_flowtable_entries", "kind" => "listen")
            .set(shared.table.listen_len() as f64);
        gauge!("flowsteer_flowtable_capacity_entries").set(shared.table.capacity() as f64);
        let available = shared.pool.available();
        gauge!("flowsteer_pool_buffers", "state" => "free").set(f64::from(available));
        gauge!("flowsteer_pool_buffers", "state" => "in_use")
            .set(f64::from(shared.pool.capacity().saturating_sub(available)));
        for (q, source) in shared.traffic.iter().enumerate() {
            for (what, v) in source.snapshot() {
                counter!(format!("flowsteer_generator_{what}_total"), "queue" => q.to_string())
                    .absolute(v);
            }
        }
    });
    recorder.handle().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_rules() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head: false }
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head: true }
        );
        let status = |r: Request| match r {
            Request::Reject { status, .. } => status,
            Request::Metrics { .. } => "200",
        };
        assert_eq!(
            status(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n")),
            "405 Method Not Allowed"
        );
        assert_eq!(
            status(parse_request(b"GET / HTTP/1.1\r\n\r\n")),
            "404 Not Found"
        );
        assert_eq!(
            status(parse_request(b"GET /metrics\r\n\r\n")),
            "400 Bad Request"
        );
        assert_eq!(
            status(parse_request(b"GET /metrics SPDY/3\r\n\r\n")),
            "400 Bad Request"
        );
        assert_eq!(
            status(parse_request(b"\xff\xfe\r\n\r\n")),
            "400 Bad Request"
        );
        assert_eq!(
            status(parse_request(b"GET  /metrics HTTP/1.1\r\n\r\n")),
            "400 Bad Request"
        );
    }
}
