//! Fuzz target: the streaming request decoder under any segmentation.
//!
//! Input layout: byte 0 says how many cut points follow (mod 16), each next
//! byte is the size of one chunk (+1), and the rest is the TCP byte stream.
//! The stream is fed to a [`RequestDecoder`] in those chunks (cycling) and,
//! separately, in one piece; the two must agree with each other and with a
//! plain reference decoder written for this check, on the requests decoded,
//! the error and whether a request is left half-received. The same stream
//! through a [`ServerSession`] must produce exactly those lengths as replies.
//! Nothing may panic.
//!
//! ```text
//! cargo +nightly fuzz run request_decoder fuzz/corpus/request_decoder
//! cargo run --manifest-path fuzz/Cargo.toml --bin request_decoder -- fuzz/corpus/request_decoder
//! ```
//!
//! The second form (any toolchain, no libFuzzer) replays files and
//! directories of inputs.

#![cfg_attr(fuzzing, no_main)]

use protocol::{is_valid_length, ProtocolError, RequestDecoder, ServerSession, HEADER_LEN};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lengths: Vec<u32>,
    error: Option<ProtocolError>,
    /// Whether a request is half-received (meaningful without an error).
    mid_request: bool,
}

/// Splits the input into chunk sizes and the stream.
fn split_plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (vec![1], data);
    };
    let cuts = usize::from(first % 16).min(rest.len());
    let (plan, stream) = rest.split_at(cuts);
    let mut sizes: Vec<usize> = plan.iter().map(|&b| usize::from(b) + 1).collect();
    if sizes.is_empty() {
        sizes.push(stream.len().max(1));
    }
    (sizes, stream)
}

/// Feeds `stream` in chunks of `sizes` (cycling), stopping at the first error.
fn decode_chunked(stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut decoder = RequestDecoder::default();
    let mut lengths = Vec::new();
    let mut rest = stream;
    let mut error = None;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if let Err(e) = decoder.feed(chunk, |len| lengths.push(len)) {
            error = Some(e);
            // A failed decoder stays failed.
            assert_eq!(
                decoder.feed(b"more", |_| panic!("request after error")),
                Err(e)
            );
            break;
        }
    }
    Outcome {
        mid_request: error.is_none() && decoder.mid_request(),
        lengths,
        error,
    }
}

/// The protocol read off the whole stream at once, by the simplest code.
fn reference(stream: &[u8]) -> Outcome {
    let mut lengths = Vec::new();
    let mut pos = 0;
    loop {
        let left = stream.len() - pos;
        if left < HEADER_LEN {
            return Outcome {
                lengths,
                error: None,
                mid_request: left > 0,
            };
        }
        let header = [
            stream[pos],
            stream[pos + 1],
            stream[pos + 2],
            stream[pos + 3],
        ];
        let length = u32::from_be_bytes(header);
        if !is_valid_length(length) {
            return Outcome {
                lengths,
                error: Some(ProtocolError::LengthOutOfRange { length }),
                mid_request: false,
            };
        }
        let total = length as usize;
        if left < total {
            return Outcome {
                lengths,
                error: None,
                mid_request: true,
            };
        }
        lengths.push(length);
        pos += total;
    }
}

fn check(data: &[u8]) {
    let (sizes, stream) = split_plan(data);
    let chunked = decode_chunked(stream, &sizes);
    let one_shot = decode_chunked(stream, &[stream.len().max(1)]);
    assert_eq!(chunked, one_shot, "segmentation changed the result");
    assert_eq!(
        one_shot,
        reference(stream),
        "decoder disagrees with the reference"
    );

    // The server session answers exactly the decoded requests, in order.
    let mut session = ServerSession::default();
    let mut replies = Vec::new();
    let mut session_error = None;
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if let Err(e) = session.on_bytes(chunk, &mut replies) {
            session_error = Some(e);
            break;
        }
    }
    let expected: Vec<u8> = one_shot
        .lengths
        .iter()
        .flat_map(|l| l.to_be_bytes())
        .collect();
    assert_eq!(replies, expected);
    assert_eq!(session_error, one_shot.error);
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

/// Replays the files (and directories of files) named on the command line.
#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    replay::replay(check)
}

#[cfg(not(fuzzing))]
#[path = "replay.rs"]
mod replay;
