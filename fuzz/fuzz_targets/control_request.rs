//! Fuzz target: the decoder of a two-host run's control requests (the
//! lines `attach` and `stats` send to the supervisor owning the run).
//!
//! Any line must either be refused with a message or give a request that
//! encodes back to a line decoding to the same request. Nothing may panic.
//!
//! ```text
//! scripts/fuzz --time 600 control_request
//! cargo run --manifest-path fuzz/Cargo.toml --bin control_request -- fuzz/corpus/control_request
//! ```

#![cfg_attr(fuzzing, no_main)]

use testbed::remote::control::{decode_request, encode};

fn check(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    match decode_request(&line) {
        Ok(request) => {
            let again = encode(&request).expect("a decoded request encodes");
            let back = decode_request(again.trim_end()).expect("an encoded request decodes");
            assert_eq!(back, request, "round trip changed the request");
        }
        Err(message) => assert!(!message.is_empty(), "a refusal says why"),
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
