//! Packet pool: capacity accounting, caches, buffer isolation and bounds, cross-thread use.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use flowsteer_nic::pool::{PacketPool, PktBuf, PoolError};

#[test]
fn rejects_empty_and_oversized_pools() {
    assert_eq!(
        PacketPool::new(0, 2048).unwrap_err(),
        PoolError::ZeroBuffers
    );
    assert_eq!(PacketPool::new(16, 0).unwrap_err(), PoolError::ZeroDataRoom);
    let message = PoolError::ZeroBuffers.to_string();
    assert!(message.contains("got 0"), "{message}");
}

// Miri cannot model an allocator that refuses: it stops the whole run instead.
#[test]
#[cfg_attr(miri, ignore)]
fn rejects_a_pool_larger_than_memory() {
    // ~280 TB: more than any address space or allocator grants.
    match PacketPool::new(u32::MAX, u16::MAX) {
        Err(PoolError::TooLarge { .. }) | Err(PoolError::OutOfMemory { .. }) => {}
        other => panic!("expected a size error, got {other:?}"),
    }
}

#[test]
fn alloc_everything_then_nothing_is_left_then_free_everything() {
    let pool = PacketPool::new(64, 128).unwrap();
    assert_eq!(
        (pool.capacity(), pool.available(), pool.in_use()),
        (64, 64, 0)
    );
    let mut cache = pool.cache(8);
    let mut bufs = Vec::new();
    for taken in 1..=64u32 {
        bufs.push(cache.alloc().expect("pool still has buffers"));
        assert_eq!(pool.in_use(), taken);
        assert_eq!(pool.available(), 64 - taken);
    }
    assert!(cache.alloc().is_none());
    assert_eq!(cache.alloc_bulk(&mut Vec::new(), 4), 0);
    let indices: HashSet<u32> = bufs.iter().map(PktBuf::index).collect();
    assert_eq!(indices, (0..64).collect::<HashSet<u32>>());

    for (freed, buf) in bufs.drain(..).enumerate() {
        cache.free(buf);
        assert_eq!(pool.available(), freed as u32 + 1);
        assert!(cache.len() <= cache.size());
    }
    assert_eq!(pool.in_use(), 0);
    drop(cache);
    assert_eq!(pool.available(), 64);
}

#[test]
fn bulk_alloc_and_free_are_exact() {
    let pool = PacketPool::new(100, 256).unwrap();
    let mut cache = pool.cache(16);
    let mut first = Vec::new();
    assert_eq!(cache.alloc_bulk(&mut first, 40), 40);
    assert_eq!(pool.in_use(), 40);
    let mut second = Vec::new();
    // Only 60 are left: a larger request gets exactly those.
    assert_eq!(cache.alloc_bulk(&mut second, 75), 60);
    assert_eq!(pool.available(), 0);
    assert_eq!(cache.alloc_bulk(&mut second, 1), 0);

    cache.free_bulk(&mut first);
    assert!(first.is_empty());
    assert_eq!(pool.available(), 40);
    cache.free_bulk(&mut second);
    assert_eq!(pool.available(), 100);
    assert!(cache.len() <= cache.size());
}

#[test]
fn several_caches_count_exactly_when_quiet() {
    let pool = PacketPool::new(256, 64).unwrap();
    let mut caches: Vec<_> = (0..4).map(|_| pool.cache(32)).collect();
    let mut held = Vec::new();
    for (i, cache) in caches.iter_mut().enumerate() {
        assert_eq!(cache.alloc_bulk(&mut held, 10 * (i + 1)), 10 * (i + 1));
    }
    // 100 out; the rest is split between the free list and the four caches.
    assert_eq!(pool.in_use(), 100);
    assert!(caches.iter().map(|c| c.len()).sum::<usize>() > 0);
    for (i, buf) in held.drain(..).enumerate() {
        caches[i % 4].free(buf);
    }
    assert_eq!(pool.available(), 256);
    caches.clear();
    assert_eq!(pool.available(), 256);
}

#[test]
fn cache_of_size_zero_goes_straight_to_the_pool() {
    let pool = PacketPool::new(8, 64).unwrap();
    let mut cache = pool.cache(0);
    let buf = cache.alloc().unwrap();
    assert_eq!(pool.available(), 7);
    cache.free(buf);
    assert_eq!(cache.len(), 0);
    assert_eq!(pool.available(), 8);
    let mut all = Vec::new();
    assert_eq!(cache.alloc_bulk(&mut all, 9), 8);
    cache.free_bulk(&mut all);
    assert_eq!(pool.available(), 8);
}

#[test]
fn cache_size_is_clamped_to_the_pool() {
    let pool = PacketPool::new(4, 64).unwrap();
    let cache = pool.cache(u32::MAX);
    assert_eq!(cache.size(), 4);
    assert!(Arc::ptr_eq(cache.pool(), &pool));
}

#[test]
fn writing_one_buffer_never_touches_its_neighbours() {
    let pool = PacketPool::new(3, 100).unwrap();
    let mut cache = pool.cache(0);
    let mut bufs: Vec<PktBuf> = (0..3).map(|_| cache.alloc().unwrap()).collect();
    bufs.sort_by_key(PktBuf::index);
    for (fill, buf) in bufs.iter_mut().enumerate() {
        assert_eq!(buf.buffer_mut().len(), 100);
        buf.buffer_mut().fill(fill as u8 + 1);
        buf.set_len(100).unwrap();
        buf.set_rss_hash(0x1000 + fill as u32);
    }
    // Rewrite the middle one completely, including its metadata.
    bufs[1].buffer_mut().fill(0xee);
    bufs[1].set_len(7).unwrap();
    bufs[1].set_rss_hash(0xdead_beef);
    for (fill, buf) in [(0usize, &bufs[0]), (2, &bufs[2])] {
        assert_eq!(buf.len(), 100);
        assert!(buf.data().iter().all(|&b| b == fill as u8 + 1));
        assert_eq!(buf.rss_hash(), 0x1000 + fill as u32);
    }
    assert_eq!(bufs[1].data(), &[0xee; 7]);
    cache.free_bulk(&mut bufs);
    assert_eq!(pool.available(), 3);
}

#[test]
fn length_is_bounded_by_the_data_room() {
    let pool = PacketPool::new(2, 60).unwrap();
    let mut cache = pool.cache(2);
    let mut buf = cache.alloc().unwrap();
    assert!(buf.is_empty());
    assert_eq!(buf.data_room(), 60);
    buf.set_len(60).unwrap();
    assert_eq!(buf.data_mut().len(), 60);
    assert_eq!(
        buf.set_len(61),
        Err(PoolError::LenTooLarge {
            len: 61,
            data_room: 60
        })
    );
    assert_eq!(buf.len(), 60, "a refused length leaves the old one");
    assert!(buf.write_frame(&[1; 61]).is_err());
    buf.write_frame(&[9, 8, 7]).unwrap();
    assert_eq!(buf.data(), &[9, 8, 7]);
    assert!(PoolError::LenTooLarge {
        len: 61,
        data_room: 60
    }
    .to_string()
    .contains("got 61"));
    cache.free(buf);
}

#[test]
fn a_reused_buffer_comes_back_empty() {
    let pool = PacketPool::new(1, 64).unwrap();
    let mut cache = pool.cache(1);
    let mut buf = cache.alloc().unwrap();
    buf.write_frame(&[1, 2, 3]).unwrap();
    buf.set_rss_hash(42);
    let index = buf.index();
    cache.free(buf);
    let buf = cache.alloc().unwrap();
    assert_eq!(buf.index(), index);
    assert_eq!((buf.len(), buf.rss_hash()), (0, 0));
    cache.free(buf);
}

#[test]
fn a_buffer_freed_to_another_pool_is_counted_not_taken() {
    let home = PacketPool::new(4, 64).unwrap();
    let other = PacketPool::new(4, 64).unwrap();
    let mut home_cache = home.cache(2);
    let mut other_cache = other.cache(2);
    let stray = home_cache.alloc().unwrap();
    other_cache.free(stray);
    assert_eq!(other.foreign_frees(), 1);
    assert_eq!(other.available(), 4, "the foreign buffer was not taken in");
    assert_eq!(home.in_use(), 1, "its own pool still shows it out");
    assert_eq!(home.foreign_frees(), 0);
}

#[test]
fn pool_outlives_caches_and_buffers_leak_visibly() {
    let pool = PacketPool::new(4, 64).unwrap();
    let mut cache = pool.cache(4);
    // A handle that is never freed: its buffer never comes back.
    let _leaked = cache.alloc().unwrap();
    drop(cache);
    assert_eq!(pool.available(), 3);
    assert_eq!(pool.in_use(), 1);
}

/// Two threads each allocate a million buffers, stamp them, free half themselves and send half
/// to the other thread, which checks the stamp and frees them into its own cache.
#[test]
fn two_threads_alloc_and_free_a_million_times_passing_buffers() {
    // Under miri the same interleavings are checked for undefined behaviour, fewer times.
    const OPS: u32 = if cfg!(miri) { 2_000 } else { 1_000_000 };
    let pool = PacketPool::new(1024, 64).unwrap();
    let (to_b, from_a) = mpsc::channel::<(PktBuf, u32)>();
    let (to_a, from_b) = mpsc::channel::<(PktBuf, u32)>();

    let worker =
        |me: u8, send: mpsc::Sender<(PktBuf, u32)>, recv: mpsc::Receiver<(PktBuf, u32)>| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let mut cache = pool.cache(64);
                let peer = 1 - me;
                let mut received = 0u64;
                let mut check = |cache: &mut flowsteer_nic::pool::PoolCache,
                                 (buf, n): (PktBuf, u32)| {
                    assert_eq!(buf.data(), stamp(peer, n).as_slice());
                    assert_eq!(buf.rss_hash(), n);
                    cache.free(buf);
                    received += 1;
                };
                let mut n = 0;
                while n < OPS {
                    while let Ok(item) = recv.try_recv() {
                        check(&mut cache, item);
                    }
                    let Some(mut buf) = cache.alloc() else {
                        thread::yield_now();
                        continue;
                    };
                    buf.write_frame(&stamp(me, n)).unwrap();
                    buf.set_rss_hash(n);
                    if n % 2 == 0 {
                        send.send((buf, n)).unwrap();
                    } else {
                        assert_eq!(buf.data(), stamp(me, n).as_slice());
                        cache.free(buf);
                    }
                    n += 1;
                }
                drop(send);
                for item in recv.iter() {
                    check(&mut cache, item);
                }
                received
            })
        };
    let a = worker(0, to_b, from_b);
    let b = worker(1, to_a, from_a);
    assert_eq!(a.join().unwrap(), u64::from(OPS / 2));
    assert_eq!(b.join().unwrap(), u64::from(OPS / 2));
    assert_eq!(pool.available(), pool.capacity());
    assert_eq!(pool.foreign_frees(), 0);
}

fn stamp(thread: u8, n: u32) -> [u8; 5] {
    let [b0, b1, b2, b3] = n.to_be_bytes();
    [thread, b0, b1, b2, b3]
}

#[test]
fn a_buffer_outliving_its_pool_stays_usable() {
    let pool = PacketPool::new(2, 64).unwrap();
    let mut cache = pool.cache(2);
    let mut buf = cache.alloc().unwrap();
    drop(cache);
    drop(pool);
    // The pool leaked its memory rather than free it under a live handle.
    buf.write_frame(&[5; 64]).unwrap();
    assert_eq!(buf.data(), &[5; 64]);
}

#[test]
fn handles_cross_threads_as_the_engine_needs() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PacketPool>();
    send_sync::<PktBuf>();
    send::<flowsteer_nic::pool::PoolCache>();
    assert_eq!(std::mem::size_of::<PktBuf>(), std::mem::size_of::<usize>());
    assert_eq!(
        std::mem::size_of::<Option<PktBuf>>(),
        std::mem::size_of::<usize>()
    );
}

/// A prefetch is a hint: on every buffer of a pool of one-line slots (whose second prefetched
/// line is the next slot's, and for the last slot lies past the allocation) it changes no
/// frame, length or hash.
#[test]
fn prefetching_any_buffer_changes_nothing() {
    let pool = PacketPool::new(4, 48).unwrap();
    let mut cache = pool.cache(0);
    let mut bufs: Vec<PktBuf> = (0..4).map(|_| cache.alloc().unwrap()).collect();
    for (fill, buf) in bufs.iter_mut().enumerate() {
        buf.buffer_mut().fill(fill as u8 + 1);
        buf.set_len(48).unwrap();
        buf.set_rss_hash(fill as u32);
    }
    for buf in &bufs {
        buf.prefetch();
    }
    for buf in &bufs {
        let fill = buf.rss_hash() as u8 + 1;
        assert_eq!(buf.len(), 48);
        assert!(buf.data().iter().all(|&b| b == fill));
    }
    cache.free_bulk(&mut bufs);
    assert_eq!(pool.available(), 4);
}

/// The frame starts 32 bytes into its slot's first line, after the metadata, so that a frame of
/// up to 96 bytes and the metadata take two lines; slots are whole lines apart, so no line
/// holds parts of two buffers.
#[test]
fn a_small_frame_shares_its_first_line_with_the_metadata_and_none_with_another_buffer() {
    const LINE: usize = 64;
    for room in [1u16, 32, 33, 96, 2048] {
        let pool = PacketPool::new(8, room).unwrap();
        let mut cache = pool.cache(0);
        let mut bufs: Vec<PktBuf> = (0..8).map(|_| cache.alloc().unwrap()).collect();
        let mut lines = HashSet::new();
        for buf in &mut bufs {
            let data = buf.buffer_mut();
            assert_eq!(data.len(), usize::from(room));
            let start = data.as_ptr() as usize;
            assert_eq!(start % LINE, 32, "room {room}");
            let first = start / LINE;
            let last = (start + data.len() - 1) / LINE;
            for line in first..=last {
                assert!(
                    lines.insert(line),
                    "room {room}: line {line} holds two buffers"
                );
            }
            if data.len() >= 96 {
                assert_eq!((start + 95) / LINE, first + 1, "room {room}");
            }
        }
        cache.free_bulk(&mut bufs);
    }
}

/// The classification a buffer carries describes its frame as it is: writing the frame in any
/// way forgets it, and a buffer's next owner gets neither it nor the lookup note.
#[test]
fn a_buffer_forgets_its_classification_when_its_frame_is_written_or_it_is_freed() {
    use flowsteer_nic::wire::classify_parsed;

    let pool = PacketPool::new(1, 256).unwrap();
    let mut cache = pool.cache(0);
    let mut frame = vec![0u8; 60];
    frame[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let (_, parsed) = classify_parsed(&frame).unwrap();
    assert!(parsed.is_some());
    let mut buf = cache.alloc().unwrap();
    buf.write_frame(&frame).unwrap();
    let writes: [fn(&mut PktBuf); 4] = [
        |b| b.write_frame(&[0u8; 60]).unwrap(),
        |b| b.set_len(60).unwrap(),
        |b| b.data_mut()[0] = 1,
        |b| b.buffer_mut()[0] = 1,
    ];
    for write in writes {
        buf.set_parsed(parsed);
        assert_eq!(buf.parsed(), parsed);
        assert!(buf.classified().is_some());
        write(&mut buf);
        assert!(!buf.parsed().is_some());
        assert_eq!(buf.classified(), None);
    }
    buf.set_parsed(parsed);
    buf.set_lookup_note(0x2_0001);
    cache.free(buf);
    let buf = cache.alloc().unwrap();
    assert!(!buf.parsed().is_some());
    assert_eq!(buf.lookup_note(), 0);
    cache.free(buf);
}
