/*
 * Out-of-line wrappers for the DPDK 22.11 API that exists only as static-inline functions, macros or
 * thread-local variables in the headers, so that Rust can call it through an ordinary symbol.
 *
 * Cost: each wrapper is one direct call (no PLT: shim.c is linked statically into the Rust binary)
 * around the inlined DPDK body, about 1-2 ns. The burst wrappers pay it once per burst; the
 * per-packet ones (softrss, mbuf alloc/free) have bulk variants that pay it once per batch.
 *
 * Concurrency: every wrapper has exactly the thread-safety of the DPDK function it wraps (stated on
 * each line); none adds a lock or shared state.
 */
#ifndef DPDK_SYS_SHIM_H
#define DPDK_SYS_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_mempool_cache;
struct rte_ring;
struct rte_rcu_qsbr;
struct rte_event;

/* rte_errno of the calling thread (a per-lcore TLS variable, a macro in rte_errno.h). */
int dpdk_sys_errno(void);
/* Sets rte_errno of the calling thread. */
void dpdk_sys_set_errno(int value);

/* rte_openlog_stream(stderr): the EAL's log to the standard error stream alone (the default
 * stream also copies every line to syslog). Not thread-safe against logging threads: call it
 * before rte_eal_init. */
int dpdk_sys_log_to_stderr(void);

/* rte_lcore_id(): the EAL lcore of the calling thread, or LCORE_ID_ANY for a non-EAL thread. */
unsigned int dpdk_sys_lcore_id(void);
/* rte_get_tsc_cycles() / rte_rdtsc(): the time stamp counter, no serialisation. */
uint64_t dpdk_sys_rdtsc(void);

/* rte_eth_rx_burst: one (port, queue) must be polled by one thread at a time. */
uint16_t dpdk_sys_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                               uint16_t nb_pkts);
/* rte_eth_tx_burst: one (port, queue) must be used by one thread at a time. Unsent mbufs stay the
 * caller's. */
uint16_t dpdk_sys_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                               uint16_t nb_pkts);

/* The RSS flow types of rte_ethdev.h (RTE_ETH_RSS_*, RTE_BIT64 macros that bindgen cannot evaluate),
 * one per index from 0: its bit through *bit and the name testpmd gives it (the individual types of
 * rss_type_table, app/test-pmd/config.c); NULL past the last. Pure, thread-safe. */
const char *dpdk_sys_rss_flow_type(unsigned int index, uint64_t *bit);

/* rte_pktmbuf_alloc: NULL when the pool is empty. Thread-safe (mempool MP/MC by default). */
struct rte_mbuf *dpdk_sys_pktmbuf_alloc(struct rte_mempool *mp);
/* rte_pktmbuf_alloc_bulk: all or nothing; 0 on success, -ENOENT when the pool has too few. */
int dpdk_sys_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
/* rte_pktmbuf_free: frees every segment; NULL is ignored. */
void dpdk_sys_pktmbuf_free(struct rte_mbuf *m);
/* rte_pktmbuf_mtod(m, void *): the first byte of the data of the first segment. */
void *dpdk_sys_pktmbuf_mtod(struct rte_mbuf *m);
/* rte_pktmbuf_append: grows the last segment by len bytes; NULL when the tailroom is too small. */
char *dpdk_sys_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/* rte_pktmbuf_reset: back to an empty single-segment packet. */
void dpdk_sys_pktmbuf_reset(struct rte_mbuf *m);

/* rte_mempool_generic_get: all or nothing, 0 on success, -ENOENT when the pool has too few. Through
 * `cache` (a user-owned cache, or NULL for none): the cache must be used by one thread at a time;
 * the pool itself is MP/MC with the default ring ops. */
int dpdk_sys_mempool_generic_get(struct rte_mempool *mp, void **obj_table, unsigned int n,
                                 struct rte_mempool_cache *cache);
/* rte_mempool_generic_put: never fails; `cache` as for generic_get. */
void dpdk_sys_mempool_generic_put(struct rte_mempool *mp, void *const *obj_table, unsigned int n,
                                  struct rte_mempool_cache *cache);
/* rte_mempool_cache_flush: returns everything `cache` holds to the pool in one bulk enqueue; NULL
 * flushes the calling thread's per-lcore cache (nothing for an unregistered non-EAL thread). */
void dpdk_sys_mempool_cache_flush(struct rte_mempool_cache *cache, struct rte_mempool *mp);
/* The objects in the mempool's own store, every cache left out: the ops' get_count, reached
 * through the exported ops table (rte_mempool_ops_get_count is internal to DPDK). */
unsigned int dpdk_sys_mempool_ring_count(const struct rte_mempool *mp);

/* rte_ring_mp_enqueue_burst: any number of threads at once; one CAS on the producer head per call. */
unsigned int dpdk_sys_ring_mp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
                                            unsigned int *free_space);
/* rte_ring_sp_enqueue_burst: one producer thread at a time. */
unsigned int dpdk_sys_ring_sp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
                                            unsigned int *free_space);
/* rte_ring_sc_dequeue_burst: one consumer thread at a time. */
unsigned int dpdk_sys_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
                                            unsigned int *available);
/* rte_ring_mc_dequeue_burst: any number of consumer threads at once. */
unsigned int dpdk_sys_ring_mc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
                                            unsigned int *available);
/* rte_ring_count / rte_ring_free_count: a racy snapshot. */
unsigned int dpdk_sys_ring_count(const struct rte_ring *r);
unsigned int dpdk_sys_ring_free_count(const struct rte_ring *r);

/* rte_softrss: Toeplitz hash of input_len host-order 32-bit words with a 40-byte RSS key. */
uint32_t dpdk_sys_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);
/* rte_softrss over n tuples of input_len words each, stored back to back; one call per batch, so a
 * benchmark measures DPDK's Toeplitz and not the call. */
void dpdk_sys_softrss_bulk(uint32_t *tuples, uint32_t input_len, uint32_t n, const uint8_t *rss_key,
                           uint32_t *hashes);

/* rte_hash_crc and rte_jhash as out-of-line functions with the rte_hash_function signature. */
uint32_t dpdk_sys_hash_crc(const void *data, uint32_t data_len, uint32_t init_val);
uint32_t dpdk_sys_jhash(const void *key, uint32_t length, uint32_t initval);

/* rte_rcu_qsbr_quiescent: reader thread_id reports a quiescent state (one store, no RMW). */
void dpdk_sys_rcu_qsbr_quiescent(struct rte_rcu_qsbr *v, unsigned int thread_id);
/* rte_rcu_qsbr_thread_online / offline: start / stop being waited for by writers. */
void dpdk_sys_rcu_qsbr_thread_online(struct rte_rcu_qsbr *v, unsigned int thread_id);
void dpdk_sys_rcu_qsbr_thread_offline(struct rte_rcu_qsbr *v, unsigned int thread_id);

/* rte_event_enqueue_new_burst: events with op NEW only; one (device, port) must be used by one
 * thread at a time. Returns how many leading events the device accepted (fewer when it is out of
 * credits: the rest stay the caller's). */
uint16_t dpdk_sys_event_enqueue_new_burst(uint8_t dev_id, uint8_t port_id, const struct rte_event *ev,
                                          uint16_t nb_events);
/* rte_event_enqueue_burst: events of any op (NEW, FORWARD, RELEASE); one thread per port. */
uint16_t dpdk_sys_event_enqueue_burst(uint8_t dev_id, uint8_t port_id, const struct rte_event *ev,
                                      uint16_t nb_events);
/* rte_event_dequeue_burst: up to nb_events into ev; with implicit release (the default) this also
 * releases the events of the port's previous dequeue. One thread per port. */
uint16_t dpdk_sys_event_dequeue_burst(uint8_t dev_id, uint8_t port_id, struct rte_event *ev,
                                      uint16_t nb_events, uint64_t timeout_ticks);
/* rte_event_maintain: the background work of a port that neither enqueues nor dequeues for a
 * while (flushing buffered events); one thread per port. */
int dpdk_sys_event_maintain(uint8_t dev_id, uint8_t port_id, int op);

#endif
