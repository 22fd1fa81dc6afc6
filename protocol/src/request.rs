//! Requests: encoding (load generator side) and streaming decoding (engine side).

use crate::{is_valid_length, ProtocolError};

/// Size of the big-endian length header that starts every request.
pub const HEADER_LEN: usize = 4;

/// Appends one request of total length `length` to `out`.
///
/// The payload is a deterministic pattern derived from `tag` (see
/// [`fill_payload`]), so a capture shows which request a segment belongs to.
///
/// # Errors
/// [`ProtocolError::EncodeLength`] when `length` is outside 512..=1024.
pub fn encode_request(length: u32, tag: u64, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    if !is_valid_length(length) {
        return Err(ProtocolError::EncodeLength { length });
    }
    out.extend_from_slice(&length.to_be_bytes());
    let start = out.len();
    out.resize(start + length as usize - HEADER_LEN, 0);
    fill_payload(tag, &mut out[start..]);
    Ok(())
}

/// Fills `payload` with a cheap pattern derived from `tag`.
pub fn fill_payload(tag: u64, payload: &mut [u8]) {
    let mut state = tag ^ 0x9E37_79B9_7F4A_7C15;
    for chunk in payload.chunks_mut(8) {
        // xorshift64: fast, not cryptographic, never all zeros.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_be_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Streaming decoder of requests: feed it whatever a read returned.
///
/// It never buffers payload bytes: it only counts them off, so its memory is
/// constant whatever the peer sends.
#[derive(Debug, Default, Clone)]
pub struct RequestDecoder {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// Payload bytes still to skip for the request in progress.
    payload_left: usize,
    /// Total length of the request in progress (valid while `payload_left > 0`).
    current_len: u32,
    failed: Option<ProtocolError>,
}

impl RequestDecoder {
    /// Consumes `data`, calling `on_request(length)` once per complete request
    /// in stream order.
    ///
    /// # Errors
    /// The first protocol violation; the decoder then stays failed and every
    /// later call returns the same error (the connection is to be closed).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_request: impl FnMut(u32),
    ) -> Result<(), ProtocolError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        while !data.is_empty() {
            if self.payload_left > 0 {
                let take = self.payload_left.min(data.len());
                self.payload_left -= take;
                data = &data[take..];
                if self.payload_left == 0 {
                    on_request(self.current_len);
                }
                continue;
            }
            let take = (HEADER_LEN - self.header_filled).min(data.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&data[..take]);
            self.header_filled += take;
            data = &data[take..];
            if self.header_filled == HEADER_LEN {
                self.header_filled = 0;
                let length = u32::from_be_bytes(self.header);
                if !is_valid_length(length) {
                    let err = ProtocolError::LengthOutOfRange { length };
                    self.failed = Some(err);
                    return Err(err);
                }
                self.current_len = length;
                self.payload_left = length as usize - HEADER_LEN;
            }
        }
        Ok(())
    }

    /// Whether a request has started but not completed (a peer vanishing now
    /// left a half message).
    #[must_use]
    pub fn mid_request(&self) -> bool {
        self.header_filled > 0 || self.payload_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], cut: usize) -> Result<Vec<u32>, ProtocolError> {
        let mut decoder = RequestDecoder::default();
        let mut seen = Vec::new();
        for piece in wire.chunks(cut) {
            decoder.feed(piece, |len| seen.push(len))?;
        }
        assert!(!decoder.mid_request());
        Ok(seen)
    }

    #[test]
    fn any_segmentation_yields_the_same_requests() {
        let lengths = [512, 1024, 777, 513, 1023, 600];
        let mut wire = Vec::new();
        for (tag, len) in lengths.iter().enumerate() {
            encode_request(*len, tag as u64, &mut wire).unwrap();
        }
        for cut in [1, 2, 3, 4, 5, 7, 511, 512, 1000, 4096, wire.len()] {
            assert_eq!(decode_all(&wire, cut).unwrap(), lengths, "cut {cut}");
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        let mut wire = Vec::new();
        encode_request(512, 0, &mut wire).unwrap();
        encode_request(1024, 0, &mut wire).unwrap();
        assert_eq!(decode_all(&wire, 3).unwrap(), [512, 1024]);
    }

    #[test]
    fn out_of_range_lengths_fail_and_stay_failed() {
        for bad in [0u32, 4, 511, 1025, u32::MAX] {
            let mut decoder = RequestDecoder::default();
            let err = decoder.feed(&bad.to_be_bytes(), |_| panic!("no request"));
            assert!(
                matches!(err, Err(ProtocolError::LengthOutOfRange { length }) if length == bad)
            );
            let again = decoder.feed(&[0; 8], |_| panic!("no request"));
            assert!(matches!(again, Err(ProtocolError::LengthOutOfRange { .. })));
        }
    }

    #[test]
    fn half_message_is_visible() {
        let mut wire = Vec::new();
        encode_request(700, 1, &mut wire).unwrap();
        let mut decoder = RequestDecoder::default();
        decoder.feed(&wire[..2], |_| unreachable!()).unwrap();
        assert!(decoder.mid_request());
        decoder.feed(&wire[2..300], |_| unreachable!()).unwrap();
        assert!(decoder.mid_request());
        let mut seen = 0;
        decoder.feed(&wire[300..], |_| seen += 1).unwrap();
        assert_eq!(seen, 1);
        assert!(!decoder.mid_request());
    }

    #[test]
    fn encode_rejects_illegal_lengths() {
        let mut out = Vec::new();
        assert!(matches!(
            encode_request(511, 0, &mut out),
            Err(ProtocolError::EncodeLength { length: 511 })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn payload_depends_on_tag() {
        let (mut a, mut b) = (vec![0; 100], vec![0; 100]);
        fill_payload(1, &mut a);
        fill_payload(2, &mut b);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }
}
