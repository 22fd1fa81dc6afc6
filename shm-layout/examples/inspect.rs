//! Prints the snapshot of a segment as JSON, or why it cannot be opened.
//!
//! `cargo run -p shm-layout --example inspect -- /dev/hugepages/bypasslab-run`
//!
//! Exit status: 0 printed, 1 the segment was refused (the message says
//! which file and why), 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use shm_layout::Segment;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: inspect SEGMENT-FILE");
        return ExitCode::from(2);
    };
    match Segment::open(&PathBuf::from(path)) {
        Ok(seg) => match serde_json::to_string_pretty(&seg.snapshot()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("inspect: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("inspect: {e}");
            ExitCode::from(1)
        }
    }
}
