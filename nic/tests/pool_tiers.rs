//! Two-level pools: an L1 segment per queue and a shared L2 segment; buffers return to their
//! own segment whoever frees them, threads borrow from the shared pool below the watermark, and
//! failures are counted where they happen.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use flowsteer_nic::pool::{PacketPool, PktBuf, PoolError, SegmentStats, Tier, Tiers};

fn tiers(queues: u16, per_queue: u32, shared: u32, low_watermark: u32) -> Tiers {
    Tiers {
        queues,
        per_queue,
        shared,
        low_watermark,
    }
}

fn segment(pool: &PacketPool, tier: Tier) -> SegmentStats {
    pool.segments()
        .into_iter()
        .find(|s| s.tier == tier)
        .expect("segment exists")
}

fn all_full(pool: &PacketPool) -> bool {
    pool.segments().iter().all(|s| s.available == s.capacity)
}

#[test]
fn segments_are_listed_queue_by_queue_then_shared() {
    let pool = PacketPool::tiered(&tiers(2, 100, 50, 10), 128).unwrap();
    let segments = pool.segments();
    let layout: Vec<(Tier, u32, u32)> = segments
        .iter()
        .map(|s| (s.tier, s.capacity, s.available))
        .collect();
    assert_eq!(
        layout,
        [
            (Tier::Queue(0), 100, 100),
            (Tier::Queue(1), 100, 100),
            (Tier::Shared, 50, 50)
        ]
    );
    assert_eq!(
        (pool.capacity(), pool.queues(), pool.low_watermark()),
        (250, 2, 10)
    );
    assert_eq!(Tier::Queue(1).to_string(), "q1");
    assert_eq!(Tier::Shared.to_string(), "shared");
}

#[test]
fn an_empty_split_is_refused() {
    assert_eq!(
        PacketPool::tiered(&tiers(4, 0, 0, 0), 128).unwrap_err(),
        PoolError::ZeroBuffers
    );
    assert_eq!(
        PacketPool::tiered(&tiers(1, 8, 8, 0), 0).unwrap_err(),
        PoolError::ZeroDataRoom
    );
}

#[test]
fn a_cache_draws_from_its_queues_segment_and_a_queue_without_one_from_the_shared() {
    let pool = PacketPool::tiered(&tiers(2, 64, 64, 0), 128).unwrap();
    for (home, expect) in [
        (Tier::Queue(0), Tier::Queue(0)),
        (Tier::Queue(1), Tier::Queue(1)),
        (Tier::Queue(7), Tier::Shared),
        (Tier::Shared, Tier::Shared),
    ] {
        let mut cache = pool.cache_for(home, 8);
        assert_eq!(cache.home(), expect);
        let buf = cache.alloc().unwrap();
        assert_eq!(pool.tier_of(&buf), Some(expect));
        cache.free(buf);
    }
    assert!(all_full(&pool));
}

#[test]
fn a_buffer_freed_by_another_thread_goes_back_to_its_own_segment() {
    let pool = PacketPool::tiered(&tiers(2, 256, 128, 0), 128).unwrap();
    let (to_b, from_a) = mpsc::channel::<Vec<PktBuf>>();
    let a = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let mut cache = pool.cache_for(Tier::Queue(0), 32);
            let mut bufs = Vec::new();
            assert_eq!(cache.alloc_bulk(&mut bufs, 200), 200);
            assert!(bufs.iter().all(|b| pool.tier_of(b) == Some(Tier::Queue(0))));
            to_b.send(bufs).unwrap();
        })
    };
    a.join().unwrap();
    let bufs = from_a.recv().unwrap();
    assert_eq!(segment(&pool, Tier::Queue(0)).available, 56);
    let b = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let mut cache = pool.cache_for(Tier::Queue(1), 32);
            let mut bufs = bufs;
            cache.free_bulk(&mut bufs);
            // Counted as queue 0's free buffers while they wait in B's return stack, and none
            // lands in B's own segment.
            assert_eq!(segment(&pool, Tier::Queue(0)).available, 256);
            assert_eq!(segment(&pool, Tier::Queue(1)).available, 256);
            assert!(cache.len() < 32, "returned in bulk: {}", cache.len());
        })
    };
    b.join().unwrap();
    assert!(all_full(&pool));
    assert_eq!(pool.foreign_frees(), 0);
    // Every buffer is queue 0's again: a cache of queue 0 gets all 256 without borrowing.
    let mut cache = pool.cache_for(Tier::Queue(0), 32);
    let mut bufs = Vec::new();
    assert_eq!(cache.alloc_bulk(&mut bufs, 256), 256);
    assert!(bufs.iter().all(|b| pool.tier_of(b) == Some(Tier::Queue(0))));
    assert_eq!(segment(&pool, Tier::Queue(0)).borrowed, 0);
    cache.free_bulk(&mut bufs);
}

#[test]
fn below_the_watermark_a_thread_borrows_from_the_shared_pool_then_takes_its_last_buffers() {
    const L1: u32 = 128;
    const SHARED: u32 = 64;
    const WATERMARK: u32 = 48;
    const CACHE: u32 = 16;
    let pool = PacketPool::tiered(&tiers(1, L1, SHARED, WATERMARK), 128).unwrap();
    let mut cache = pool.cache_for(Tier::Queue(0), CACHE);
    let mut bufs = Vec::new();
    // Refills of CACHE / 2 from the L1 while its store holds at least the watermark.
    while pool.segments()[0].available > WATERMARK - CACHE / 2 {
        bufs.push(cache.alloc().unwrap());
    }
    assert!(bufs.iter().all(|b| pool.tier_of(b) == Some(Tier::Queue(0))));
    assert_eq!(segment(&pool, Tier::Queue(0)).borrowed, 0);
    // Once the store is below it (and the cache empty), the shared pool serves.
    let next = cache.alloc().unwrap();
    assert_eq!(pool.tier_of(&next), Some(Tier::Shared));
    bufs.push(next);
    assert_eq!(
        segment(&pool, Tier::Queue(0)).borrowed,
        u64::from(CACHE / 2)
    );
    // Then the whole shared pool, then the L1's last buffers, then nothing.
    while let Some(buf) = cache.alloc() {
        bufs.push(buf);
    }
    assert_eq!(bufs.len() as u32, L1 + SHARED);
    let l1 = segment(&pool, Tier::Queue(0));
    assert_eq!((l1.borrowed, l1.failures), (u64::from(SHARED), 1));
    assert_eq!(segment(&pool, Tier::Shared).failures, 0);
    // Freed by the same thread, every buffer goes back where it came from.
    cache.free_bulk(&mut bufs);
    drop(cache);
    assert!(all_full(&pool));
}

#[test]
fn a_short_bulk_allocation_counts_one_failure_on_the_home_segment() {
    let pool = PacketPool::tiered(&tiers(2, 16, 0, 0), 128).unwrap();
    let mut cache = pool.cache_for(Tier::Queue(1), 8);
    let mut bufs = Vec::new();
    assert_eq!(cache.alloc_bulk(&mut bufs, 40), 16);
    assert_eq!(segment(&pool, Tier::Queue(1)).failures, 1);
    assert_eq!(segment(&pool, Tier::Queue(0)).failures, 0);
    assert!(cache.alloc().is_none());
    assert_eq!(segment(&pool, Tier::Queue(1)).failures, 2);
    cache.free_bulk(&mut bufs);
    drop(cache);
    assert!(all_full(&pool));
}

#[test]
fn a_buffer_of_another_pool_is_counted_not_routed() {
    let home = PacketPool::tiered(&tiers(2, 8, 8, 0), 128).unwrap();
    let other = PacketPool::tiered(&tiers(2, 8, 8, 0), 128).unwrap();
    let mut mine = home.cache_for(Tier::Queue(0), 4);
    let mut theirs = other.cache_for(Tier::Queue(1), 4);
    let buf = mine.alloc().unwrap();
    assert_eq!(other.tier_of(&buf), None);
    theirs.free(buf);
    assert_eq!(other.foreign_frees(), 1);
    assert!(all_full(&other));
    assert_eq!(home.available(), 23, "the buffer stays out of its own pool");
}

/// Four threads, each homed on its own queue's L1 (the shared pool small, the watermark high so
/// that borrowing happens), pass most of their buffers to the next thread, which frees them. At
/// the end every segment is full again and none received a buffer of another.
#[test]
fn threads_passing_buffers_in_a_ring_return_every_buffer_to_its_segment() {
    const THREADS: u16 = 4;
    const OPS: u32 = if cfg!(miri) { 500 } else { 200_000 };
    let pool = PacketPool::tiered(&tiers(THREADS, 256, 128, 240), 64).unwrap();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::sync_channel::<PktBuf>(64);
        senders.push(tx);
        receivers.push(rx);
    }
    // Thread t sends to t + 1 and receives from t - 1.
    senders.rotate_left(1);
    let handles: Vec<_> = senders
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(t, (send, recv))| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let mut cache = pool.cache_for(Tier::Queue(t as u16), 32);
                let mut n = 0;
                let mut stray = 0;
                while n < OPS {
                    while let Ok(buf) = recv.try_recv() {
                        stray += u32::from(pool.tier_of(&buf).is_none());
                        cache.free(buf);
                    }
                    let Some(buf) = cache.alloc() else {
                        thread::yield_now();
                        continue;
                    };
                    if n % 4 == 0 {
                        cache.free(buf);
                    } else if let Err(mpsc::TrySendError::Full(buf)) = send.try_send(buf) {
                        cache.free(buf);
                    }
                    n += 1;
                }
                drop(send);
                for buf in recv.iter() {
                    cache.free(buf);
                }
                stray
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    assert_eq!(pool.foreign_frees(), 0);
    for s in pool.segments() {
        assert_eq!(s.available, s.capacity, "{:?}", s.tier);
    }
    // With the watermark at 94% of each L1, the threads borrowed.
    let borrowed: u64 = pool.segments().iter().map(|s| s.borrowed).sum();
    assert!(borrowed > 0);
}
