//! Replies: the engine answers each request with its total length.

/// Size of a reply on the wire.
pub const REPLY_LEN: usize = 4;

/// Streaming decoder of replies (load generator side).
#[derive(Debug, Default, Clone)]
pub struct ReplyDecoder {
    partial: [u8; REPLY_LEN],
    filled: usize,
}

impl ReplyDecoder {
    /// Consumes `data`, calling `on_reply(length)` for every complete reply.
    /// Replies carry no range check here: the caller compares each with what
    /// it sent, and a mismatch is its verdict to give.
    pub fn feed(&mut self, data: &[u8], mut on_reply: impl FnMut(u32)) {
        for &byte in data {
            self.partial[self.filled] = byte;
            self.filled += 1;
            if self.filled == REPLY_LEN {
                self.filled = 0;
                on_reply(u32::from_be_bytes(self.partial));
            }
        }
    }

    /// Whether a reply has started but not completed.
    #[must_use]
    pub fn mid_reply(&self) -> bool {
        self.filled > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_anywhere() {
        let wire: Vec<u8> = [512u32, 1024, 700]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        for cut in 1..=wire.len() {
            let mut decoder = ReplyDecoder::default();
            let mut seen = Vec::new();
            for piece in wire.chunks(cut) {
                decoder.feed(piece, |r| seen.push(r));
            }
            assert_eq!(seen, [512, 1024, 700]);
            assert!(!decoder.mid_reply());
        }
    }
}
