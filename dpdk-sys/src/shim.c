/*
 * Real symbols for DPDK's static-inline fast-path functions. Compiled with
 * the same flags as the DPDK headers (pkg-config libdpdk --cflags), so the
 * inline bodies are those of the installed DPDK.
 */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim.h"

uint16_t shim_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                       uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t shim_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                       uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
void shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void *shim_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
char *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
uint16_t shim_data_len(const struct rte_mbuf *m) { return m->data_len; }
uint32_t shim_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
uint16_t shim_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
unsigned shim_lcore_id(void) { return rte_lcore_id(); }
int shim_errno(void) { return rte_errno; }

uint32_t shim_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
uint32_t shim_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
uint32_t shim_mbuf_default_dataroom(void) { return RTE_MBUF_DEFAULT_DATAROOM; }
uint32_t shim_max_ethports(void) { return RTE_MAX_ETHPORTS; }
uint32_t shim_max_lcore(void) { return RTE_MAX_LCORE; }
uint32_t shim_ether_addr_len(void) { return RTE_ETHER_ADDR_LEN; }
uint32_t shim_mempool_cache_max_size(void) { return RTE_MEMPOOL_CACHE_MAX_SIZE; }
uint64_t shim_sizeof_eth_stats(void) { return sizeof(struct rte_eth_stats); }
uint64_t shim_sizeof_eth_conf(void) { return sizeof(struct rte_eth_conf); }
uint64_t shim_sizeof_eth_dev_info(void) { return sizeof(struct rte_eth_dev_info); }
uint64_t shim_sizeof_eth_rxconf(void) { return sizeof(struct rte_eth_rxconf); }
uint64_t shim_sizeof_ether_addr(void) { return sizeof(struct rte_ether_addr); }
