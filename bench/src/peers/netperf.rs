//! netperf TCP_RR: 768-byte requests and 4-byte responses (the engines'
//! protocol), measured only where the user installed netperf (it is not
//! in Debian's main archive).

use bench_report::stats::Figures;

use super::{
    Cells, ParseError, Parsed, Peer, PeerClient, PeerServer, Placement, Unavailable,
    PEER_MESSAGE_SIZE,
};
use crate::Setting;

/// The peer.
pub struct Netperf;

const NAME: &str = "netperf";

impl Peer for Netperf {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tests(&self) -> &'static [&'static str] {
        &["tcp_rr"]
    }

    fn programs(&self) -> &'static [&'static str] {
        &["netperf", "netserver"]
    }

    fn missing(&self, missing: &[&str]) -> Unavailable {
        Unavailable(format!(
            "{} not installed: netperf is not in Debian's main archive (non-free, or build it from source), so it is measured only where the user installed it",
            missing.join(" and ")
        ))
    }

    fn parse(&self, output: &str) -> Result<Parsed, ParseError> {
        Ok((parse_figures(output)?, Vec::new()))
    }

    fn measure(&self, bench: &mut dyn Cells, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(3);
        let Some(server) =
            bench.peer_server(self, &server(port), &p.log("netserver.log"), p, setting)
        else {
            return;
        };
        for packets in bench.packets(setting) {
            let index = bench.peer_cell(self, "tcp_rr", setting, packets, 1);
            // Bounded as if no slower than 100 transactions/s.
            bench.run_peer_cell(self, p, index, 60 + packets / 100, &|rep| {
                let log = p.log(&format!("netperf-{packets}-{rep}.log"));
                (client(p, port, packets), log)
            });
        }
        drop(server);
    }
}

/// netserver in the foreground on `port`.
#[must_use]
pub fn server(port: u16) -> PeerServer {
    PeerServer::Netserver { port }
}

/// netperf TCP_RR with `transactions` 768-byte requests and 4-byte
/// responses (the engines' protocol), key=value output.
#[must_use]
pub fn client(p: &Placement, port: u16, transactions: u64) -> PeerClient {
    PeerClient::Netperf {
        server: p.server_at(port),
        transactions,
        request_size: u32::try_from(PEER_MESSAGE_SIZE).unwrap_or(u32::MAX),
    }
}

/// Figures of netperf's key=value output. Latency percentiles exist only
/// when netperf was built with histograms; a missing or negative one is
/// `None`.
///
/// # Errors
/// No transaction rate in the output.
pub fn parse_figures(text: &str) -> Result<Figures, ParseError> {
    let value = |key: &str| -> Option<f64> {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| k.trim() == key)
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let rate = value("TRANSACTION_RATE")
        .or_else(|| value("THROUGHPUT"))
        .filter(|r| *r > 0.0)
        .ok_or_else(|| ParseError::new(NAME, "printed no transaction rate"))?;
    let elapsed = value("ELAPSED_TIME");
    #[allow(clippy::cast_precision_loss)]
    let size = PEER_MESSAGE_SIZE as f64;
    Ok(Figures {
        messages: elapsed.map(|e| (rate * e).round()),
        elapsed_s: elapsed,
        messages_per_s: Some(rate),
        bandwidth_kb_s: Some(rate * size / 1000.0),
        rtt_mean_us: value("MEAN_LATENCY"),
        rtt_p50_us: value("P50_LATENCY"),
        rtt_p99_us: value("P99_LATENCY"),
        rtt_p999_us: None,
        rtt_max_us: value("MAX_LATENCY"),
        ..Figures::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyval_parses() {
        let text = "THROUGHPUT=12000.50\nELAPSED_TIME=2.00\nMEAN_LATENCY=83.2\nP50_LATENCY=80\nP99_LATENCY=-1\nMAX_LATENCY=400\nTRANSACTION_RATE=12000.50\n";
        let f = parse_figures(text).unwrap();
        assert_eq!(f.messages_per_s, Some(12000.5));
        assert_eq!(f.messages, Some(24001.0));
        assert_eq!(f.rtt_p99_us, None);
        assert_eq!(f.rtt_p50_us, Some(80.0));
        assert!(parse_figures("nothing").is_err());
    }
}
