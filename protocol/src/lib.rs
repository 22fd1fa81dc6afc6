//! The wire protocol spoken between the load generator and every engine.
//!
//! TCP is a byte stream, so every request carries its own length:
//!
//! ```text
//! request: u32 big-endian total length L (512 ≤ L ≤ 1024, header included) ‖ L-4 payload bytes
//! reply:   u32 big-endian L
//! ```
//!
//! This crate only turns bytes into typed values and back; it holds no
//! sockets. Engines keep one [`RequestDecoder`] per connection (or a
//! [`ServerSession`], which also produces the replies) and the load generator
//! keeps one [`ReplyDecoder`] per connection. Both decoders accept the stream
//! cut at any byte boundary.
//!
//! ```
//! use protocol::{encode_request, ServerSession};
//!
//! let mut wire = Vec::new();
//! encode_request(600, 7, &mut wire).unwrap();
//! encode_request(512, 8, &mut wire).unwrap();
//!
//! let mut session = ServerSession::default();
//! let mut replies = Vec::new();
//! // Any segmentation works: feed the stream one byte at a time.
//! for byte in &wire {
//!     session.on_bytes(std::slice::from_ref(byte), &mut replies).unwrap();
//! }
//! assert_eq!(replies, [0, 0, 2, 88, 0, 0, 2, 0]);
//! ```

mod reply;
mod request;
mod session;

pub use reply::{ReplyDecoder, REPLY_LEN};
pub use request::{encode_request, fill_payload, RequestDecoder, HEADER_LEN};
pub use session::{ServerSession, SessionStats};

/// Smallest legal total request length, header included.
pub const MIN_MESSAGE_LEN: u32 = 512;
/// Largest legal total request length, header included.
pub const MAX_MESSAGE_LEN: u32 = 1024;

/// A violation of the wire protocol by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A request header announced a length outside 512..=1024.
    #[error(
        "request length {length} outside the allowed range {MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}"
    )]
    LengthOutOfRange {
        /// The length the header announced.
        length: u32,
    },
    /// A caller asked to encode a request of an illegal length.
    #[error("cannot encode a request of {length} bytes: allowed range is {MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}")]
    EncodeLength {
        /// The requested length.
        length: u32,
    },
}

/// Whether `length` is a legal total request length.
#[must_use]
pub const fn is_valid_length(length: u32) -> bool {
    length >= MIN_MESSAGE_LEN && length <= MAX_MESSAGE_LEN
}
