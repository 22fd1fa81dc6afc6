//! Placeholder: see the DPDK engine issue.
