/*
 * Out-of-line bodies for shim.h. Compiled by build.rs with the cflags of pkg-config `libdpdk`
 * (including its -march and the forced rte_config.h), so the inlined DPDK code is the code a C
 * application built against the same headers would run.
 */
#include "wrapper.h"

int dpdk_sys_errno(void) { return rte_errno; }

void dpdk_sys_set_errno(int value) { rte_errno = value; }

int dpdk_sys_log_to_stderr(void) { return rte_openlog_stream(stderr); }

unsigned int dpdk_sys_lcore_id(void) { return rte_lcore_id(); }

uint64_t dpdk_sys_rdtsc(void) { return rte_get_tsc_cycles(); }

uint16_t dpdk_sys_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                               uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t dpdk_sys_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                               uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

static const struct {
	const char *name;
	uint64_t bit;
} rss_flow_types[] = {
	{ "ipv4", RTE_ETH_RSS_IPV4 },
	{ "ipv4-frag", RTE_ETH_RSS_FRAG_IPV4 },
	{ "ipv4-tcp", RTE_ETH_RSS_NONFRAG_IPV4_TCP },
	{ "ipv4-udp", RTE_ETH_RSS_NONFRAG_IPV4_UDP },
	{ "ipv4-sctp", RTE_ETH_RSS_NONFRAG_IPV4_SCTP },
	{ "ipv4-other", RTE_ETH_RSS_NONFRAG_IPV4_OTHER },
	{ "ipv6", RTE_ETH_RSS_IPV6 },
	{ "ipv6-frag", RTE_ETH_RSS_FRAG_IPV6 },
	{ "ipv6-tcp", RTE_ETH_RSS_NONFRAG_IPV6_TCP },
	{ "ipv6-udp", RTE_ETH_RSS_NONFRAG_IPV6_UDP },
	{ "ipv6-sctp", RTE_ETH_RSS_NONFRAG_IPV6_SCTP },
	{ "ipv6-other", RTE_ETH_RSS_NONFRAG_IPV6_OTHER },
	{ "l2-payload", RTE_ETH_RSS_L2_PAYLOAD },
	{ "ipv6-ex", RTE_ETH_RSS_IPV6_EX },
	{ "ipv6-tcp-ex", RTE_ETH_RSS_IPV6_TCP_EX },
	{ "ipv6-udp-ex", RTE_ETH_RSS_IPV6_UDP_EX },
	{ "port", RTE_ETH_RSS_PORT },
	{ "vxlan", RTE_ETH_RSS_VXLAN },
	{ "geneve", RTE_ETH_RSS_GENEVE },
	{ "nvgre", RTE_ETH_RSS_NVGRE },
	{ "gtpu", RTE_ETH_RSS_GTPU },
	{ "eth", RTE_ETH_RSS_ETH },
	{ "s-vlan", RTE_ETH_RSS_S_VLAN },
	{ "c-vlan", RTE_ETH_RSS_C_VLAN },
	{ "esp", RTE_ETH_RSS_ESP },
	{ "ah", RTE_ETH_RSS_AH },
	{ "l2tpv3", RTE_ETH_RSS_L2TPV3 },
	{ "pfcp", RTE_ETH_RSS_PFCP },
	{ "pppoe", RTE_ETH_RSS_PPPOE },
	{ "ecpri", RTE_ETH_RSS_ECPRI },
	{ "mpls", RTE_ETH_RSS_MPLS },
	{ "ipv4-chksum", RTE_ETH_RSS_IPV4_CHKSUM },
	{ "l4-chksum", RTE_ETH_RSS_L4_CHKSUM },
	{ "l2tpv2", RTE_ETH_RSS_L2TPV2 },
	{ "l3-pre96", RTE_ETH_RSS_L3_PRE96 },
	{ "l3-pre64", RTE_ETH_RSS_L3_PRE64 },
	{ "l3-pre56", RTE_ETH_RSS_L3_PRE56 },
	{ "l3-pre48", RTE_ETH_RSS_L3_PRE48 },
	{ "l3-pre40", RTE_ETH_RSS_L3_PRE40 },
	{ "l3-pre32", RTE_ETH_RSS_L3_PRE32 },
	{ "l2-dst-only", RTE_ETH_RSS_L2_DST_ONLY },
	{ "l2-src-only", RTE_ETH_RSS_L2_SRC_ONLY },
	{ "l4-dst-only", RTE_ETH_RSS_L4_DST_ONLY },
	{ "l4-src-only", RTE_ETH_RSS_L4_SRC_ONLY },
	{ "l3-dst-only", RTE_ETH_RSS_L3_DST_ONLY },
	{ "l3-src-only", RTE_ETH_RSS_L3_SRC_ONLY },
};

const char *dpdk_sys_rss_flow_type(unsigned int index, uint64_t *bit)
{
	if (index >= RTE_DIM(rss_flow_types))
		return NULL;
	*bit = rss_flow_types[index].bit;
	return rss_flow_types[index].name;
}

struct rte_mbuf *dpdk_sys_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int dpdk_sys_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void dpdk_sys_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void *dpdk_sys_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

char *dpdk_sys_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }

void dpdk_sys_pktmbuf_reset(struct rte_mbuf *m) { rte_pktmbuf_reset(m); }

int dpdk_sys_mempool_generic_get(struct rte_mempool *mp, void **obj_table, unsigned int n,
                                 struct rte_mempool_cache *cache)
{
	return rte_mempool_generic_get(mp, obj_table, n, cache);
}

void dpdk_sys_mempool_generic_put(struct rte_mempool *mp, void *const *obj_table, unsigned int n,
                                  struct rte_mempool_cache *cache)
{
	rte_mempool_generic_put(mp, obj_table, n, cache);
}

void dpdk_sys_mempool_cache_flush(struct rte_mempool_cache *cache, struct rte_mempool *mp)
{
	rte_mempool_cache_flush(cache, mp);
}

unsigned int dpdk_sys_ring_mp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
                                            unsigned int *free_space)
{
	return rte_ring_mp_enqueue_burst(r, obj_table, n, free_space);
}

unsigned int dpdk_sys_ring_sp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
                                            unsigned int *free_space)
{
	return rte_ring_sp_enqueue_burst(r, obj_table, n, free_space);
}

unsigned int dpdk_sys_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
                                            unsigned int *available)
{
	return rte_ring_sc_dequeue_burst(r, obj_table, n, available);
}

unsigned int dpdk_sys_ring_mc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
                                            unsigned int *available)
{
	return rte_ring_mc_dequeue_burst(r, obj_table, n, available);
}

unsigned int dpdk_sys_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

unsigned int dpdk_sys_ring_free_count(const struct rte_ring *r) { return rte_ring_free_count(r); }

uint32_t dpdk_sys_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key)
{
	return rte_softrss(input_tuple, input_len, rss_key);
}

void dpdk_sys_softrss_bulk(uint32_t *tuples, uint32_t input_len, uint32_t n, const uint8_t *rss_key,
                           uint32_t *hashes)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		hashes[i] = rte_softrss(tuples + (size_t)i * input_len, input_len, rss_key);
}

uint32_t dpdk_sys_hash_crc(const void *data, uint32_t data_len, uint32_t init_val)
{
	return rte_hash_crc(data, data_len, init_val);
}

uint32_t dpdk_sys_jhash(const void *key, uint32_t length, uint32_t initval)
{
	return rte_jhash(key, length, initval);
}

void dpdk_sys_rcu_qsbr_quiescent(struct rte_rcu_qsbr *v, unsigned int thread_id)
{
	rte_rcu_qsbr_quiescent(v, thread_id);
}

void dpdk_sys_rcu_qsbr_thread_online(struct rte_rcu_qsbr *v, unsigned int thread_id)
{
	rte_rcu_qsbr_thread_online(v, thread_id);
}

void dpdk_sys_rcu_qsbr_thread_offline(struct rte_rcu_qsbr *v, unsigned int thread_id)
{
	rte_rcu_qsbr_thread_offline(v, thread_id);
}

uint16_t dpdk_sys_event_enqueue_new_burst(uint8_t dev_id, uint8_t port_id, const struct rte_event *ev,
                                          uint16_t nb_events)
{
	return rte_event_enqueue_new_burst(dev_id, port_id, ev, nb_events);
}

uint16_t dpdk_sys_event_enqueue_burst(uint8_t dev_id, uint8_t port_id, const struct rte_event *ev,
                                      uint16_t nb_events)
{
	return rte_event_enqueue_burst(dev_id, port_id, ev, nb_events);
}

uint16_t dpdk_sys_event_dequeue_burst(uint8_t dev_id, uint8_t port_id, struct rte_event *ev,
                                      uint16_t nb_events, uint64_t timeout_ticks)
{
	return rte_event_dequeue_burst(dev_id, port_id, ev, nb_events, timeout_ticks);
}

int dpdk_sys_event_maintain(uint8_t dev_id, uint8_t port_id, int op)
{
	return rte_event_maintain(dev_id, port_id, op);
}

unsigned int dpdk_sys_mempool_ring_count(const struct rte_mempool *mp)
{
	return rte_mempool_get_ops(mp->ops_index)->get_count(mp);
}
