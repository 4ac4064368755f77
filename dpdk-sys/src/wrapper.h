/*
 * The DPDK 22.11 headers dpdk-sys binds. bindgen reads this file (with the cflags of pkg-config
 * `libdpdk`, which force-include rte_config.h); the exported functions and types come straight from
 * it, the static-inline ones through the wrappers declared in shim.h.
 */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_bus_vdev.h>
#include <rte_eth_ring.h>
#include <rte_ring.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_hash_crc.h>
#include <rte_thash.h>
#include <rte_rcu_qsbr.h>
#include <rte_distributor.h>
#include <rte_eventdev.h>
#include <rte_service.h>

#include "shim.h"
