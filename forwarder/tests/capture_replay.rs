//! `port.driver = "pcap"`: captures written here replayed through the engine, every record
//! accounted for (a frame received, or a port drop by reason), the run ending by itself once
//! the capture is processed, with and without a stack, in both balance modes, from .pcap and
//! .pcapng files; and the errors of a capture that cannot be read.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use flowsteer_config::{App, AppKind, Balance, Config, Driver, PcapPace, Profile};
use flowsteer_testrig::frames::{arp_request, echo_request, ethernet};
use flowsteer_testrig::pcap::{encode, Record};
use forwarder::engine::{run, Engine, EngineError, RunOptions};
use forwarder::report::RunReport;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const ECHO_PORT: u16 = 7;
/// Longer than any replay here takes: a run that reaches it did not stop by itself.
const LIMIT: Duration = Duration::from_secs(30);

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(
            std::env::temp_dir().join(format!("flowsteer-capture-{}-{name}", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

fn config(capture: &Path, balance: Balance, apps: bool) -> Config {
    let mut cfg = Config::default();
    cfg.traffic.profile = Profile::None;
    cfg.port.driver = Driver::Pcap;
    cfg.port.pcap_file = capture.display().to_string();
    cfg.engine.threads = 2;
    cfg.port.queues = 2;
    cfg.engine.balance = balance;
    if apps {
        cfg.stack.app = vec![App::new(AppKind::TcpEcho, ECHO_PORT)];
    }
    cfg.validate().expect("valid configuration");
    cfg
}

/// Replays `cfg`'s capture to its end; the run must stop by itself, well before [`LIMIT`].
fn replay(cfg: &Config) -> RunReport {
    let opts = RunOptions {
        duration: Some(LIMIT),
        stop: Arc::new(AtomicBool::new(false)),
        status_lines: false,
        serve_metrics: false,
    };
    let report = run(cfg, opts).expect("the replay runs");
    assert!(
        report.duration_secs < LIMIT.as_secs_f64() / 2.0,
        "the run did not stop at the end of the capture:\n{}",
        report.render_table()
    );
    assert!(
        report.conservation.ok,
        "{:?}\n{}",
        report.conservation.failures,
        report.render_table()
    );
    assert_eq!(report.pool.available, report.pool.capacity, "pool whole");
    report
}

/// The port's drops of `reason`, over all queues.
fn port_drops(report: &RunReport, reason: &str) -> u64 {
    report
        .port_dropped
        .iter()
        .map(|queue| queue.get(reason).copied().unwrap_or(0))
        .sum()
}

fn all_port_drops(report: &RunReport) -> u64 {
    report.port_dropped.iter().flat_map(|q| q.values()).sum()
}

/// An ICMP echo request from 198.18.<n / 250>.<n % 250 + 2>: flows spread over the queues by
/// their address pair.
fn ping(n: u32) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 18, (n / 250) as u8, (n % 250 + 2) as u8);
    echo_request(
        CLIENT_MAC,
        Config::default().port.mac.0,
        IpAddr::V4(src),
        IpAddr::V4(Config::default().port.ipv4),
        b"capture",
    )
}

/// A TCP SYN from the client's port `src_port` to the engine's echo port.
fn syn(src_port: u16) -> Vec<u8> {
    let engine_ip = Config::default().port.ipv4;
    let tcp = TcpRepr {
        src_port,
        dst_port: ECHO_PORT,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64_000,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: CLIENT_IP,
        dst_addr: engine_ip,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    ethernet(
        CLIENT_MAC,
        Config::default().port.mac.0,
        0x0800,
        ip.buffer_len() + tcp.buffer_len(),
        |p| {
            let caps = ChecksumCapabilities::default();
            let mut packet = Ipv4Packet::new_unchecked(p);
            ip.emit(&mut packet, &caps);
            tcp.emit(
                &mut TcpPacket::new_unchecked(packet.payload_mut()),
                &IpAddress::Ipv4(CLIENT_IP),
                &IpAddress::Ipv4(engine_ip),
                &caps,
            );
        },
    )
}

/// 400 pings, 3 truncated captures, 2 frames beyond the data room, then a record cut off by
/// the end of the file: 406 records.
fn mixed_capture(file: &TempFile) {
    let mut records: Vec<Record> = (0..400).map(|n| Record::whole(ping(n))).collect();
    for n in 0..3 {
        records.push(Record::truncated(&ping(1000 + n), 40));
    }
    let data_room = usize::from(Config::default().pool.data_room);
    for n in 0..2 {
        let mut big = ping(2000 + n);
        big.resize(data_room + 1 + n as usize, 0);
        records.push(Record::whole(big));
    }
    let mut bytes = encode(&records);
    // A record header promising 100 bytes, followed by 10.
    let cut = encode(&[Record::whole(vec![0xab; 100])]);
    bytes.extend_from_slice(&cut[24..24 + 16 + 10]);
    std::fs::write(&file.0, bytes).unwrap();
}

#[test]
fn every_record_is_a_frame_or_a_counted_drop_in_both_balance_modes() {
    let file = TempFile::new("mixed.pcap");
    mixed_capture(&file);
    for balance in [Balance::Rss, Balance::Software] {
        let report = replay(&config(&file.0, balance, false));
        let table = report.render_table();
        assert_eq!(report.total.rx, 400, "{balance}\n{table}");
        assert_eq!(port_drops(&report, "capture_truncated"), 3, "{table}");
        assert_eq!(port_drops(&report, "capture_oversize"), 2, "{table}");
        assert_eq!(port_drops(&report, "capture_unreadable"), 1, "{table}");
        assert_eq!(port_drops(&report, "capture_not_ethernet"), 0, "{table}");
        assert_eq!(report.total.rx + all_port_drops(&report), 406, "{table}");
        assert_eq!(
            report.total.processed + report.total.dropped_total,
            report.total.rx + report.total.link_copies,
            "{table}"
        );
        // Soft RSS spread the flows: both queues received.
        for thread in &report.per_thread {
            assert!(thread.rx > 100, "{balance}: {table}");
        }
    }
}

/// A pcapng capture on one Ethernet interface with nanosecond timestamps: `frames[i]` at
/// `start + i × spacing`.
fn write_pcapng(path: &Path, frames: &[Vec<u8>], spacing: Duration) {
    let mut writer = PcapNgWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 65_535,
            options: nanosecond_timestamps(),
        })
        .unwrap();
    let start = Duration::from_secs(1_700_000_000);
    for (i, frame) in frames.iter().enumerate() {
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: start + spacing * i as u32,
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: vec![],
            })
            .unwrap();
    }
}

/// The client's ARP request for the engine's address, then SYNs from 64 ports, replayed at the
/// capture's pace 5 ms apart: the ARP request reaches every thread (a neighbour message is
/// shared) before the SYNs, so each SYN is answered with a SYN-ACK, whichever thread owns it.
#[test]
fn syns_to_a_served_port_are_answered_in_both_balance_modes() {
    let file = TempFile::new("syns.pcapng");
    let syns = 64u16;
    let engine = Config::default().port;
    let mut frames = vec![arp_request(CLIENT_MAC, CLIENT_IP, engine.ipv4)];
    frames.extend((0..syns).map(|i| syn(40_000 + i)));
    write_pcapng(&file.0, &frames, Duration::from_millis(5));
    for balance in [Balance::Rss, Balance::Software] {
        let mut cfg = config(&file.0, balance, true);
        cfg.port.pcap_pace = PcapPace::Capture;
        let report = replay(&cfg);
        let table = report.render_table();
        assert_eq!(report.total.rx, u64::from(syns) + 1, "{balance}\n{table}");
        assert_eq!(all_port_drops(&report), 0, "{table}");
        let stack = report.total.stack.as_ref().expect("a stack ran");
        assert_eq!(
            stack.connections_opened,
            u64::from(syns),
            "every SYN to the served port opens a connection ({balance})\n{table}"
        );
        // A SYN-ACK per SYN, the ARP reply, and a reset per connection the shutdown aborts.
        assert_eq!(
            stack.frames_out,
            2 * u64::from(syns) + 1,
            "every SYN is answered ({balance})\n{table}"
        );
        assert_eq!(report.total.tx, stack.frames_out, "{table}");
        assert_eq!(report.total.misdirected, 0, "{table}");
    }
}

/// `if_tsresol` = 9: pcap-file writes an Enhanced Packet Block's timestamp in nanoseconds, which
/// a reader takes for microseconds unless the interface says otherwise.
fn nanosecond_timestamps() -> Vec<InterfaceDescriptionOption<'static>> {
    vec![InterfaceDescriptionOption::IfTsResol(9)]
}

/// A pcapng file with an Ethernet interface and a raw-IP one: the raw one's packets are
/// counted as not Ethernet, the others replayed.
#[test]
fn a_pcapng_capture_replays_and_counts_its_non_ethernet_interface() {
    let file = TempFile::new("mixed.pcapng");
    let mut writer = PcapNgWriter::new(std::fs::File::create(&file.0).unwrap()).unwrap();
    for linktype in [DataLink::ETHERNET, DataLink::RAW] {
        let interface = InterfaceDescriptionBlock {
            linktype,
            snaplen: 65_535,
            options: nanosecond_timestamps(),
        };
        writer.write_pcapng_block(interface).unwrap();
    }
    for n in 0..300u32 {
        let frame = ping(n);
        let packet = EnhancedPacketBlock {
            interface_id: u32::from(n % 3 == 0),
            timestamp: Duration::from_micros(u64::from(n)),
            original_len: frame.len() as u32,
            data: Cow::Owned(frame),
            options: vec![],
        };
        writer.write_pcapng_block(packet).unwrap();
    }
    drop(writer);
    for balance in [Balance::Rss, Balance::Software] {
        let report = replay(&config(&file.0, balance, true));
        let table = report.render_table();
        assert_eq!(port_drops(&report, "capture_not_ethernet"), 100, "{table}");
        assert_eq!(report.total.rx, 200, "{balance}\n{table}");
        assert_eq!(report.total.rx + all_port_drops(&report), 300, "{table}");
    }
}

#[test]
fn a_pcap_of_another_link_type_delivers_nothing_and_counts_every_record() {
    let file = TempFile::new("raw.pcap");
    let records: Vec<Record> = (0..50)
        .map(|n| Record::whole(ping(n)[14..].to_vec()))
        .collect();
    let mut bytes = encode(&records);
    // The link type, last word of the file header: LINKTYPE_RAW (101).
    bytes[20..24].copy_from_slice(&101u32.to_ne_bytes());
    std::fs::write(&file.0, bytes).unwrap();
    let report = replay(&config(&file.0, Balance::Software, false));
    let table = report.render_table();
    assert_eq!(report.total.rx, 0, "{table}");
    assert_eq!(port_drops(&report, "capture_not_ethernet"), 50, "{table}");
    assert_eq!(all_port_drops(&report), 50, "{table}");
}

/// At the capture's pace, a replay of frames spread over 2 s takes at least that long; at full
/// speed it does not wait.
#[test]
fn the_capture_pace_keeps_the_captures_timing() {
    let file = TempFile::new("paced.pcapng");
    let frames: Vec<Vec<u8>> = (0..5).map(ping).collect();
    write_pcapng(&file.0, &frames, Duration::from_millis(500));
    let mut cfg = config(&file.0, Balance::Rss, false);
    cfg.port.pcap_pace = PcapPace::Capture;
    let paced = replay(&cfg);
    assert_eq!(paced.total.rx, 5, "{}", paced.render_table());
    assert!(
        paced.duration_secs >= 2.0,
        "5 frames 500 ms apart took {} s",
        paced.duration_secs
    );
    cfg.port.pcap_pace = PcapPace::Full;
    let full = replay(&cfg);
    assert_eq!(full.total.rx, 5);
    assert!(
        full.duration_secs < paced.duration_secs - 1.0,
        "full speed {} s, the capture's pace {} s",
        full.duration_secs,
        paced.duration_secs
    );
}

#[test]
fn a_missing_or_foreign_capture_is_an_error_naming_the_key() {
    let missing = TempFile::new("missing.pcap");
    let cfg = config(&missing.0, Balance::Rss, false);
    match Engine::start(&cfg, false) {
        Err(EngineError::Device(msg)) => {
            assert!(msg.starts_with("port.pcap_file: "), "{msg}");
            assert!(msg.contains("No such file"), "{msg}");
        }
        Err(e) => panic!("not a device error: {e}"),
        Ok(_) => panic!("a missing capture started"),
    }
    let text = TempFile::new("text.pcap");
    std::fs::write(&text.0, "not a capture\n").unwrap();
    match Engine::start(&config(&text.0, Balance::Rss, false), false) {
        Err(EngineError::Device(msg)) => {
            assert!(msg.contains("not a pcap or pcapng file"), "{msg}")
        }
        Err(e) => panic!("not a device error: {e}"),
        Ok(_) => panic!("a text file started"),
    }
}

fn flowsteer_run(config_text: &str, name: &str) -> std::process::Output {
    let file = TempFile::new(name);
    std::fs::write(&file.0, config_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_flowsteer"))
        .args(["run", "--duration", "30", "--config"])
        .arg(&file.0)
        .output()
        .unwrap()
}

/// The binary: a replay ends by itself with exit 0 and its table shows the port's drops; a
/// missing capture exits with 2 naming the key, for `check` and `run` alike.
#[test]
fn the_binary_stops_at_the_end_of_the_capture_and_refuses_a_missing_one() {
    let capture = TempFile::new("cli.pcap");
    mixed_capture(&capture);
    let text = format!(
        "[engine]\nthreads = 2\n[port]\ndriver = \"pcap\"\npcap_file = \"{}\"\n\
         [traffic]\nprofile = \"none\"\n[metrics]\nenabled = false\n",
        capture.0.display()
    );
    let started = std::time::Instant::now();
    let out = flowsteer_run(&text, "cli.toml");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(stdout.contains("capture_truncated"), "{stdout}");
    assert!(stdout.contains("conservation: rx 400 "), "{stdout}");

    let missing = TempFile::new("absent.pcap");
    let text = text.replace(
        &capture.0.display().to_string(),
        &missing.0.display().to_string(),
    );
    let out = flowsteer_run(&text, "missing.toml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("port.pcap_file: must be a readable capture file"),
        "{stderr}"
    );
}
