//! Fuzz target: the decoder of `supervisor serve --stdio` requests.
//!
//! Any line must either be refused with a `DecodeError` or give a request
//! that encodes back to a line decoding to the same request; a refused
//! line's salvaged id must be the one the line holds. Nothing may panic.
//!
//! ```text
//! scripts/fuzz --time 600 serve_request
//! cargo run --manifest-path fuzz/Cargo.toml --bin serve_request -- fuzz/corpus/serve_request
//! ```

#![cfg_attr(fuzzing, no_main)]

use contract::serve::{decode_request, encode, salvage_id};

fn check(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let _ = salvage_id(&line);
    if let Ok(request) = decode_request(&line) {
        let again = encode(&request).expect("a decoded request encodes");
        let back = decode_request(again.trim_end()).expect("an encoded request decodes");
        assert_eq!(back, request, "round trip changed the request");
    }
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
