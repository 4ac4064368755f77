//! A peer on a vbridge port that writes every TCP header itself, for tests that attack a
//! server: forged resets and FINs, odd windows, overlapping data, floods. [`RawPeer`] is the
//! host (it announces itself with an ARP request, so the server learns its link address, and
//! reads the TCP segments addressed to it, skipping everything else); [`RawConn`] one
//! connection whose sequence numbers the test follows and may move.
//!
//! It waits by polling the port with short sleeps: a test tool, not a fast path.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_nic::vbridge::PeerPort;

use crate::frames::{self, TcpSegment, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

/// A host on a bridge port that builds its TCP segments itself: it announces itself with an
/// ARP request (the server learns its link address from it) and then sends and reads raw
/// segments.
pub struct RawPeer {
    pub port: PeerPort,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The server's link address, from its answer to the peer's ARP request.
    pub server_mac: [u8; 6],
}

impl RawPeer {
    /// The peer 198.18.0.`host` (link address 02:00:00:00:30:`host`) on `port`, once `server`
    /// answered its ARP request (within 5 s, else it panics).
    pub fn join(port: PeerPort, host: u8, server: Ipv4Addr) -> RawPeer {
        let mac = [0x02, 0, 0, 0, 0x30, host];
        let ip = Ipv4Addr::new(198, 18, 0, host);
        let peer = RawPeer {
            port,
            mac,
            ip,
            server_mac: [0; 6],
        };
        peer.send_frame(&frames::arp_request(mac, ip, server));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match peer.port.recv() {
                // The answer to our request (the only ARP frame sent to us alone).
                Some(frame) if frame[..6] == mac && frame[12..14] == [0x08, 0x06] => {
                    let mut server_mac = [0; 6];
                    server_mac.copy_from_slice(&frame[6..12]);
                    return RawPeer { server_mac, ..peer };
                }
                Some(_) => {}
                None => thread::sleep(Duration::from_micros(50)),
            }
        }
        panic!("{server} did not answer {ip}'s ARP request");
    }

    /// Sends `frame`, waiting while the port's ring is full: the test decides what is lost,
    /// not the rig.
    pub fn send_frame(&self, frame: &[u8]) {
        while self.port.send(frame).is_err() {
            thread::sleep(Duration::from_micros(20));
        }
    }

    /// Sends `segment` to the server's link address.
    pub fn send(&self, segment: &TcpSegment) {
        self.send_frame(&frames::tcp_v4(self.mac, self.server_mac, segment));
    }

    /// The next TCP segment for `local_port` within `limit`; other frames are skipped.
    pub fn recv(&self, local_port: u16, limit: Duration) -> Option<TcpSegment> {
        let deadline = Instant::now() + limit;
        loop {
            match self.port.recv() {
                Some(frame) => match frames::parse_tcp_v4(&frame) {
                    Some(s) if *s.dst.ip() == self.ip && s.dst.port() == local_port => {
                        return Some(s)
                    }
                    _ => {}
                },
                None if Instant::now() >= deadline => return None,
                None => thread::sleep(Duration::from_micros(50)),
            }
        }
    }

    /// Every segment for `local_port` during `period`.
    pub fn collect(&self, local_port: u16, period: Duration) -> Vec<TcpSegment> {
        let deadline = Instant::now() + period;
        let mut segments = Vec::new();
        while let Some(s) = self.recv(
            local_port,
            deadline.saturating_duration_since(Instant::now()),
        ) {
            segments.push(s);
        }
        segments
    }
}

/// One connection of a [`RawPeer`] to an echo server, its sequence numbers followed by hand
/// (a test moves them to forge segments).
pub struct RawConn<'a> {
    peer: &'a RawPeer,
    local_port: u16,
    server: SocketAddrV4,
    /// Our next sequence number.
    pub snd_nxt: u32,
    /// The server's next sequence number (what we acknowledge).
    pub rcv_nxt: u32,
    /// The window we advertise.
    pub window: u16,
}

impl<'a> RawConn<'a> {
    /// The three-way handshake with `server` from `local_port`, advertising `window` (panics
    /// without a SYN-ACK within 5 s).
    pub fn open(
        peer: &'a RawPeer,
        local_port: u16,
        server: SocketAddrV4,
        window: u16,
    ) -> RawConn<'a> {
        let isn = u32::from(local_port).wrapping_mul(0x9e37_79b9);
        let mut conn = RawConn {
            peer,
            local_port,
            server,
            snd_nxt: isn,
            rcv_nxt: 0,
            window,
        };
        conn.send(isn, TCP_SYN, &[]);
        let synack = peer
            .recv(local_port, Duration::from_secs(5))
            .expect("a SYN-ACK");
        assert_eq!(synack.flags, TCP_SYN | TCP_ACK, "{synack:?}");
        assert_eq!(synack.ack, isn.wrapping_add(1));
        conn.snd_nxt = isn.wrapping_add(1);
        conn.rcv_nxt = synack.seq.wrapping_add(1);
        conn.ack();
        conn
    }

    /// A segment with sequence number `seq`, acknowledging what we received.
    pub fn send(&self, seq: u32, flags: u8, payload: &[u8]) {
        let ack_flag = if flags & TCP_SYN != 0 { 0 } else { TCP_ACK };
        self.peer.send(&TcpSegment {
            src: SocketAddrV4::new(self.peer.ip, self.local_port),
            dst: self.server,
            seq,
            ack: self.rcv_nxt,
            flags: flags | ack_flag,
            window: self.window,
            payload: payload.to_vec(),
        });
    }

    /// A segment without data at our next sequence number: an ACK with our window.
    pub fn ack(&self) {
        self.send(self.snd_nxt, 0, &[]);
    }

    /// Sends `data` in order, in segments of at most `mss` bytes.
    pub fn write(&mut self, data: &[u8], mss: usize) {
        for chunk in data.chunks(mss) {
            self.send(self.snd_nxt, TCP_PSH, chunk);
            self.snd_nxt = self.snd_nxt.wrapping_add(chunk.len() as u32);
        }
    }

    /// Reads the echo until `len` bytes arrived in order (acknowledging each segment, with
    /// `self.window`), a reset, or `limit`. Segments out of order are not taken (the server sends
    /// them again). Returns the bytes and whether a reset came.
    pub fn read(&mut self, len: usize, limit: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + limit;
        let mut bytes = Vec::new();
        while bytes.len() < len {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(s) = self.peer.recv(self.local_port, left) else {
                break;
            };
            if s.flags & TCP_RST != 0 {
                return (bytes, true);
            }
            if s.seq == self.rcv_nxt && !s.payload.is_empty() {
                let room = usize::from(self.window).max(1);
                let take = s.payload.len().min(room);
                bytes.extend_from_slice(&s.payload[..take]);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(take as u32);
            }
            self.ack();
        }
        (bytes, false)
    }

    /// Closes: FIN, then the server's FIN is acknowledged. True when the server closed too
    /// within 5 s.
    pub fn close(&mut self) -> bool {
        self.send(self.snd_nxt, TCP_FIN, &[]);
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(s) = self.peer.recv(
            self.local_port,
            deadline.saturating_duration_since(Instant::now()),
        ) {
            if s.flags & TCP_FIN != 0 {
                self.rcv_nxt = s.seq.wrapping_add(s.payload.len() as u32 + 1);
                self.ack();
                return true;
            }
        }
        false
    }

    /// Sends `data`, reads its echo, checks it byte for byte (panics otherwise).
    pub fn echo(&mut self, data: &[u8]) {
        self.write(data, 512);
        let (echoed, reset) = self.read(data.len(), Duration::from_secs(5));
        assert!(!reset, "reset after {} echoed bytes", echoed.len());
        assert!(echoed == data, "echo differs: {echoed:?} for {data:?}");
    }
}
