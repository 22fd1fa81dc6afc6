//! A peer tool's process on a `serve` host (sockperf, iperf3, netperf):
//! started from its typed spec only ([`contract::peer_tool`]), pinned with
//! `taskset`, its stdout and stderr captured together in memory (bounded),
//! and stopped by its pid. It gets SIGTERM if `serve` itself dies, so even
//! a `serve` killed outright leaves no tool running.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contract::serve::{PeerEnded, PeerProcess, MAX_PEER_OUTPUT};

use crate::host::command::words;
use crate::host::process::{self, Ending};
use crate::host::wait::{self, Check};
use crate::placement::Node;

/// How long a stopped tool may take to go after SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

/// How long the output reader may trail the tool's end.
const READER_TRAILS: Duration = Duration::from_secs(2);

/// A tool's captured output.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

/// A running peer tool.
pub struct Tool {
    child: Child,
    command: Vec<String>,
    output: Arc<Mutex<Captured>>,
    reader: Option<JoinHandle<()>>,
    ending: Option<Ending>,
}

impl Tool {
    /// Starts `program args` on this host, pinned to `core`.
    ///
    /// # Errors
    /// The pipe or the process cannot be made (`taskset` or the tool is
    /// not installed: the error says which).
    pub fn spawn(program: &str, args: &[String], core: usize) -> std::io::Result<Self> {
        let mut command = Node::here(Some(core)).pinned_command(program);
        command.args(args);
        let shown = words(&command);
        let (reader_end, writer_end) = std::io::pipe()?;
        command
            .stdin(Stdio::null())
            .stdout(writer_end.try_clone()?)
            .stderr(writer_end);
        // SAFETY: the closure runs in the forked child before exec and
        // calls only prctl(2), which is async-signal-safe; it touches no
        // memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("starting `{}`: {e}", shown.join(" ")))
        })?;
        // The parent's copies of the write end went with `command`.
        drop(command);
        let output = Arc::new(Mutex::new(Captured::default()));
        let kept = Arc::clone(&output);
        let reader = std::thread::spawn(move || capture(reader_end, &kept));
        Ok(Self {
            child,
            command: shown,
            output,
            reader: Some(reader),
            ending: None,
        })
    }

    /// Its pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its command line, as it runs.
    #[must_use]
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// Its pid and command line, as a reply names them.
    #[must_use]
    pub fn process(&self) -> PeerProcess {
        PeerProcess {
            pid: self.pid(),
            command: self.command.clone(),
        }
    }

    /// What a reply says of it once it ended.
    #[must_use]
    pub fn ended(&self, ending: Ending, stopped: bool, output: String) -> PeerEnded {
        PeerEnded {
            process: self.process(),
            ending,
            stopped,
            output,
        }
    }

    /// How it ended, if it has.
    pub fn ending(&mut self) -> Option<Ending> {
        if self.ending.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.ending = Some(Ending::from_status(status));
            }
        }
        self.ending.clone()
    }

    /// Waits at most `limit` for it to end by itself, or until `give_up`
    /// says so; then stops it. Returns how it ended and whether it had to
    /// be stopped.
    pub fn finish(&mut self, limit: Duration, give_up: &dyn Fn() -> bool) -> (Ending, bool) {
        let ended = wait::until(limit, Duration::from_millis(20), || match self.ending() {
            Some(ending) => Check::Ready(ending),
            None if give_up() => Check::Failed(()),
            None => Check::Pending,
        });
        match ended {
            Ok(ending) => (ending, false),
            Err(_) => (self.stop(), true),
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after a grace), by its pid.
    pub fn stop(&mut self) -> Ending {
        if let Some(ending) = self.ending() {
            return ending;
        }
        let ending =
            process::terminate(&mut self.child, GRACE).unwrap_or(Ending::Exited { code: -1 });
        self.ending = Some(ending.clone());
        ending
    }

    /// Everything it printed (once it ended), with a note of what was
    /// dropped past [`MAX_PEER_OUTPUT`].
    pub fn output(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let deadline = Instant::now() + READER_TRAILS;
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        let Ok(captured) = self.output.lock() else {
            return String::new();
        };
        let mut text = String::from_utf8_lossy(&captured.bytes).into_owned();
        if captured.dropped > 0 {
            text.push_str(&format!(
                "\n[{} bytes more not kept: over {MAX_PEER_OUTPUT}]\n",
                captured.dropped
            ));
        }
        text
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn capture(mut pipe: impl Read, kept: &Mutex<Captured>) {
    let mut buffer = [0_u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mut captured) = kept.lock() else {
            return;
        };
        let room = MAX_PEER_OUTPUT.saturating_sub(captured.bytes.len());
        let taken = n.min(room);
        captured.bytes.extend_from_slice(&buffer[..taken]);
        captured.dropped += n - taken;
    }
}

/// How long a peer tool's server may take to listen, here or on an
/// engine host.
pub const SERVER_READY: Duration = Duration::from_secs(10);

/// Whether something listens on TCP `port` at `node`.
#[must_use]
pub fn listening(node: &Node, port: u16) -> bool {
    let mut ss = node.command("ss");
    ss.args(["-Hltn", &format!("sport = :{port}")]);
    crate::host::command::run(&mut ss, "").is_ok_and(|out| !out.trim().is_empty())
}

/// `text` in pieces of at most `chunk` bytes, cut at character boundaries.
#[must_use]
pub fn chunks(text: &str, chunk: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(chunk.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The last `kept` bytes of `text`, cut at a character boundary.
#[must_use]
pub fn tail(text: &str, kept: usize) -> &str {
    let mut start = text.len().saturating_sub(kept);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_pieces_at_character_boundaries() {
        let text = "aé".repeat(10);
        let pieces = chunks(&text, 5);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.len() <= 5));
        assert!(chunks("", 5).is_empty());
        assert_eq!(tail("aéb", 2), "b");
        assert_eq!(tail("ab", 5), "ab");
    }

    #[test]
    fn a_tool_s_output_and_ending_are_kept_and_a_long_one_is_stopped() {
        let mut tool = Tool::spawn(
            "sh",
            &["-c".into(), "echo out; echo err >&2; exit 3".into()],
            0,
        )
        .expect("sh runs");
        let (ending, stopped) = tool.finish(Duration::from_secs(10), &|| false);
        assert_eq!(ending, Ending::Exited { code: 3 });
        assert!(!stopped);
        let output = tool.output();
        assert!(output.contains("out") && output.contains("err"), "{output}");

        let mut long = Tool::spawn("sleep", &["30".into()], 0).expect("sleep runs");
        let (ending, stopped) = long.finish(Duration::from_millis(100), &|| false);
        assert!(stopped && !ending.is_success(), "{ending}");

        let missing = Tool::spawn("no-such-tool-bl", &[], 0)
            .map(|mut t| t.finish(Duration::from_secs(5), &|| false));
        // taskset starts and then fails to exec the tool: it exits non-zero.
        assert!(!matches!(missing, Ok((Ending::Exited { code: 0 }, _))));
    }
}
