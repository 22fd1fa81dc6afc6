/*
 * C shim over DPDK's static-inline functions and function-like macros,
 * which bindgen cannot bind: each becomes a real, exported symbol.
 */
#ifndef BYPASSLAB_DPDK_SHIM_H
#define BYPASSLAB_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t shim_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                       uint16_t nb_pkts);
uint16_t shim_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                       uint16_t nb_pkts);
struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp);
void shim_pktmbuf_free(struct rte_mbuf *m);
void *shim_pktmbuf_mtod(struct rte_mbuf *m);
char *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t shim_data_len(const struct rte_mbuf *m);
uint32_t shim_pkt_len(const struct rte_mbuf *m);
uint16_t shim_nb_segs(const struct rte_mbuf *m);
unsigned shim_lcore_id(void);
int shim_errno(void);

/* Constants as the C compiler sees them (tests compare with bindgen's). */
uint32_t shim_pktmbuf_headroom(void);
uint32_t shim_mbuf_default_buf_size(void);
uint32_t shim_mbuf_default_dataroom(void);
uint32_t shim_max_ethports(void);
uint32_t shim_max_lcore(void);
uint32_t shim_ether_addr_len(void);
uint32_t shim_mempool_cache_max_size(void);
/* Layouts of the structs Rust passes by pointer. */
uint64_t shim_sizeof_eth_stats(void);
uint64_t shim_sizeof_eth_conf(void);
uint64_t shim_sizeof_eth_dev_info(void);
uint64_t shim_sizeof_eth_rxconf(void);
uint64_t shim_sizeof_ether_addr(void);

#endif
