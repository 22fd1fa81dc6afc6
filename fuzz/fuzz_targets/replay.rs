//! Shared by the targets' plain (non-libFuzzer) builds: replays the files and
//! directories of inputs named on the command line through a check.

/// Runs `check` on every input named in argv; exit 2 on an unreadable one.
pub fn replay(check: fn(&[u8])) -> std::process::ExitCode {
    let mut inputs = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let path = std::path::PathBuf::from(arg);
        match std::fs::read_dir(&path) {
            Ok(entries) => inputs.extend(entries.filter_map(Result::ok).map(|e| e.path())),
            Err(_) => inputs.push(path),
        }
    }
    inputs.sort();
    for path in &inputs {
        match std::fs::read(path) {
            Ok(data) => check(&data),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        }
    }
    println!("{} inputs replayed, no failure", inputs.len());
    std::process::ExitCode::SUCCESS
}
