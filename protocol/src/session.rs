//! One server-side connection's protocol state: requests in, replies out.

use crate::{ProtocolError, RequestDecoder};

/// Counts for one call of [`ServerSession::on_bytes`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Complete requests decoded (and answered) in this call.
    pub requests: u64,
    /// Request bytes consumed in this call.
    pub bytes_in: u64,
    /// Reply bytes appended in this call.
    pub bytes_out: u64,
}

/// The engine side of one connection: every backend (kernel, dpdk, fstack)
/// feeds received bytes in and writes the produced replies out, so all
/// engines answer identically.
#[derive(Debug, Default, Clone)]
pub struct ServerSession {
    decoder: RequestDecoder,
}

impl ServerSession {
    /// Decodes `data` and appends one reply per complete request to `replies`.
    ///
    /// # Errors
    /// A [`ProtocolError`]: the caller counts it and closes the connection.
    /// Replies for the requests completed before the bad header are still
    /// appended, so a well-behaved prefix is answered.
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        replies: &mut Vec<u8>,
    ) -> Result<SessionStats, ProtocolError> {
        let before = replies.len();
        let mut requests = 0;
        let result = self.decoder.feed(data, |length| {
            requests += 1;
            replies.extend_from_slice(&length.to_be_bytes());
        });
        result.map(|()| SessionStats {
            requests,
            bytes_in: data.len() as u64,
            bytes_out: (replies.len() - before) as u64,
        })
    }

    /// Whether the peer is in the middle of a request.
    #[must_use]
    pub fn mid_request(&self) -> bool {
        self.decoder.mid_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_request, REPLY_LEN};

    #[test]
    fn answers_each_request_with_its_length() {
        let mut wire = Vec::new();
        for len in [512, 900, 1024] {
            encode_request(len, 0, &mut wire).unwrap();
        }
        let mut session = ServerSession::default();
        let mut out = Vec::new();
        let stats = session.on_bytes(&wire, &mut out).unwrap();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.bytes_in, wire.len() as u64);
        assert_eq!(stats.bytes_out, 3 * REPLY_LEN as u64);
        assert_eq!(out.len(), 12);
        assert_eq!(&out[4..8], &900u32.to_be_bytes());
    }

    #[test]
    fn garbage_after_good_requests_keeps_their_replies() {
        let mut wire = Vec::new();
        encode_request(512, 0, &mut wire).unwrap();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut session = ServerSession::default();
        let mut out = Vec::new();
        assert!(session.on_bytes(&wire, &mut out).is_err());
        assert_eq!(out, 512u32.to_be_bytes());
    }
}
