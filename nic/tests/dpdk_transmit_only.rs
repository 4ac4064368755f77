//! A DPDK port's transmit-only queues: a device configured with more transmit than receive
//! queues gives each owner beyond the queue pairs a transmit queue of its own
//! (`Port::take_transmit_queue`), which sends and receives nothing, and none beyond its spare
//! queues. On net_null, whose queue counts are free and which frees what it is given. The EAL
//! needs root: without it these print "skipped: needs root" and pass, except under `CI=true`.
#![cfg(feature = "dpdk")]

use dpdk_sys::{eal, ethdev};
use flowsteer_nic::dpdk::{DpdkPort, RssRequest};
use flowsteer_nic::pool::PacketPool;
use flowsteer_nic::port::{Port, PortControl, QueuePair};
use flowsteer_nic::rss::SYMMETRIC_KEY;

const VDEV: &str = "net_null0";
const BUFFERS: u32 = 1023;

fn eal_ready() -> bool {
    flowsteer_testrig::eal::eal_ready("nic-dpdk-txonly-test", &[VDEV], |args| {
        eal::init(args).map_err(|e| e.to_string())?;
        Ok(eal::runtime_dir())
    })
}

#[test]
fn owners_beyond_the_queue_pairs_send_on_spare_transmit_queues() {
    if !eal_ready() {
        return;
    }
    let id = ethdev::port_by_name(VDEV).expect("the --vdev port");
    let pool = PacketPool::with_mbufs("t_txonly_pool", BUFFERS, 2048).expect("pool");
    let rss = RssRequest {
        key: SYMMETRIC_KEY,
        reta_size: 128,
    };
    let port = DpdkPort::open_rss_sending(id, 1, 2, (256, 256), pool.clone(), &rss).expect("open");
    let info = ethdev::info(id).expect("info");
    assert_eq!((info.nb_rx_queues, info.nb_tx_queues), (1, 3));
    assert_eq!(port.queues(), 1);
    assert!(
        port.describe().contains("1 queue (+2 transmit-only)"),
        "{}",
        port.describe()
    );

    assert!(port.take_transmit_queue(0).is_err(), "owner 0 has a pair");
    let mut sender = port
        .take_transmit_queue(1)
        .expect("owner 1")
        .expect("a spare queue");
    assert!(port.take_transmit_queue(1).is_err(), "one owner per queue");
    assert!(port.take_transmit_queue(2).expect("owner 2").is_some());
    assert!(
        port.take_transmit_queue(3).expect("owner 3").is_none(),
        "no spare queue left: the owner relays"
    );
    assert_eq!(sender.queue_id(), 1);
    assert!(sender.rx_wait_fd().is_none());

    let mut cache = pool.cache(64);
    let mut rx = Vec::new();
    assert_eq!(
        sender.rx_burst(&mut cache, &mut rx, 32),
        0,
        "it receives nothing"
    );
    let mut tx = Vec::new();
    for i in 0..100u8 {
        let mut buf = cache.alloc().expect("buffer");
        buf.write_frame(&[i; 64]).expect("fits");
        tx.push(buf);
    }
    assert_eq!(sender.tx_burst(&mut cache, &mut tx), 100);
    assert!(tx.is_empty());
    drop(sender);
    assert!(
        port.take_transmit_queue(1).expect("owner 1").is_some(),
        "a dropped queue can be taken again"
    );
    port.reclaim(&mut cache);
    drop(cache);
    assert_eq!(pool.available(), BUFFERS, "net_null freed what it was sent");
}
