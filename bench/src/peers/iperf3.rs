//! iperf3: bulk TCP from NS1 to NS3 (the same bytes as a count's
//! requests), the bandwidth ceiling of the path, over as many parallel
//! streams (`-P N`) as the matrix's connection counts, up to iperf3's 128.

use std::time::Duration;

use bench_report::stats::Figures;

use super::{
    Cells, ParseError, Parsed, Peer, PeerClient, PeerServer, Placement, Server, PEER_MESSAGE_SIZE,
};
use crate::Setting;
use contract::peer_tool::IPERF3_MAX_STREAMS;

/// The peer.
pub struct Iperf3;

const NAME: &str = "iperf3";
/// The most parallel streams `iperf3 -P` takes.
const MAX_STREAMS: u32 = IPERF3_MAX_STREAMS;

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(NAME, reason)
}

impl Peer for Iperf3 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tests(&self) -> &'static [&'static str] {
        &["bulk"]
    }

    fn programs(&self) -> &'static [&'static str] {
        &["iperf3"]
    }

    /// iperf3 refuses more than 128 parallel streams.
    fn max_connections(&self) -> u32 {
        MAX_STREAMS
    }

    fn parse(&self, output: &str) -> Result<Parsed, ParseError> {
        Ok((parse_figures(output)?, Vec::new()))
    }

    fn measure(&self, bench: &mut dyn Cells, p: &Placement, setting: Setting) {
        let port = p.config.port().wrapping_add(2);
        let cells: Vec<(u64, u32)> = bench
            .packets(setting)
            .into_iter()
            .flat_map(|packets| {
                bench
                    .peer_connections(self, setting)
                    .into_iter()
                    .map(move |n| (packets, n))
            })
            .collect();
        for (packets, streams) in cells {
            let index = bench.peer_cell(self, "bulk", setting, packets, streams);
            let bytes = packets.saturating_mul(PEER_MESSAGE_SIZE);
            // One server per repetition: an iperf3 server serves one test
            // and its log is the repetition's.
            for _ in 0..bench.missing_at(index) {
                if bench.stopped() {
                    return;
                }
                let rep = bench.next_rep(index);
                let log = p.log(&format!("iperf3-server-{packets}-P{streams}-{rep}.log"));
                let server = match Server::start(&server(port), &log, p) {
                    Ok(s) => s,
                    Err(e) => {
                        bench.fail(index, 1, &e.to_string());
                        continue;
                    }
                };
                bench.run_peer_attempts(
                    self,
                    p,
                    index,
                    1,
                    120 + bytes / 1_000_000,
                    Some(&server.command),
                    &|rep| {
                        let log = p.log(&format!("iperf3-{packets}-P{streams}-{rep}.json"));
                        (client(p, port, bytes, streams), log)
                    },
                );
                server.finish(Duration::from_secs(5));
            }
        }
    }
}

/// The one-off iperf3 server on `port`.
#[must_use]
pub fn server(port: u16) -> PeerServer {
    PeerServer::Iperf3 { port }
}

/// An iperf3 client moving `bytes` from NS1 to NS3 over `streams`
/// parallel connections, JSON output.
#[must_use]
pub fn client(p: &Placement, port: u16, bytes: u64, streams: u32) -> PeerClient {
    PeerClient::Iperf3 {
        server: p.server_at(port),
        bytes,
        streams: streams.clamp(1, MAX_STREAMS),
    }
}

/// Figures of `iperf3 -J`: bandwidth from what the receiver got
/// (`end.sum_received`), and the sender's mean smoothed RTT from TCP_INFO
/// as the only latency figure iperf3 has.
///
/// # Errors
/// Not iperf3's JSON, or an error reported in it.
pub fn parse_figures(text: &str) -> Result<Figures, ParseError> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("printed no JSON: {e}")))?;
    if let Some(err) = doc.get("error").and_then(|e| e.as_str()) {
        return Err(self::err(err));
    }
    let received = doc
        .pointer("/end/sum_received")
        .ok_or_else(|| err("its JSON has no end.sum_received"))?;
    let bytes = received
        .get("bytes")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| err("its JSON has no received bytes"))?;
    let seconds = received
        .get("seconds")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| err("its JSON has no receive time"))?;
    if bytes <= 0.0 || seconds <= 0.0 {
        return Err(err(format!("moved nothing ({bytes} B in {seconds} s)")));
    }
    let mean_rtt = doc
        .pointer("/end/streams/0/sender/mean_rtt")
        .and_then(serde_json::Value::as_f64);
    #[allow(clippy::cast_precision_loss)]
    let size = PEER_MESSAGE_SIZE as f64;
    Ok(Figures {
        // In 768-byte units, so the row compares with the same count.
        messages: Some(bytes / size),
        elapsed_s: Some(seconds),
        messages_per_s: None,
        bandwidth_kb_s: Some(bytes / seconds / 1000.0),
        rtt_mean_us: mean_rtt,
        ..Figures::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parses() {
        let doc = r#"{"start":{},"end":{"streams":[{"sender":{"mean_rtt":42}}],
            "sum_sent":{"bytes":7864320,"seconds":0.0013},
            "sum_received":{"bytes":7680000,"seconds":0.0075}}}"#;
        let f = parse_figures(doc).unwrap();
        assert_eq!(f.messages, Some(10000.0));
        assert!((f.bandwidth_kb_s.unwrap() - 7680000.0 / 0.0075 / 1000.0).abs() < 1e-6);
        assert_eq!(f.rtt_mean_us, Some(42.0));
        assert!(parse_figures(r#"{"error":"unable to connect"}"#).is_err());
        assert!(parse_figures("not json").is_err());
    }
}
