//! Running a short host command (iproute2, tc, ethtool, nft, modprobe)
//! to completion, bounded in time, keeping what is needed
//! to explain a failure: the command line, its exit status, its stderr and
//! what to do.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{terminate, wait_timeout};

/// Longest a host command may take: these reconfigure a namespace or ask
/// the kernel something; one that takes longer is stuck.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// A failed external command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started at all (usually: not installed).
    #[error("`{command}` could not start: {source}; {hint}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: String,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}; {hint}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
        /// What to do.
        hint: String,
    },
    /// The program did not finish in time and was stopped.
    #[error("`{command}` did not finish within {} s and was stopped", COMMAND_LIMIT.as_secs())]
    TimedOut {
        /// The command line.
        command: String,
    },
}

impl CommandError {
    /// The stderr of a command that ran and failed; empty otherwise.
    #[must_use]
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } => stderr,
            CommandError::Spawn { .. } | CommandError::TimedOut { .. } => "",
        }
    }
}

/// The words of a command line, program first: what a report records as
/// the exact command, rendered from the [`Command`] that runs.
#[must_use]
pub fn words(command: &Command) -> Vec<String> {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// A command line rendered for messages.
pub struct Shown<'a>(pub &'a Command);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&words(self.0).join(" "))
    }
}

/// A log file that takes both of a child's output streams (created anew):
/// give the two to `stdout` and `stderr`.
///
/// # Errors
/// It cannot be created.
pub fn log_streams(path: &std::path::Path) -> std::io::Result<(Stdio, Stdio)> {
    let out = std::fs::File::create(path)?;
    let err = out.try_clone()?;
    Ok((out.into(), err.into()))
}

/// Reads a child's pipe to its end on a thread, so a chatty child never
/// blocks on a full pipe while it is waited for.
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Runs `cmd` to completion, at most [`COMMAND_LIMIT`]; returns its stdout.
/// `hint` says what the user can do when it fails.
///
/// # Errors
/// It cannot start, fails, or overruns the limit.
pub fn run(cmd: &mut Command, hint: &str) -> Result<String, CommandError> {
    let command = Shown(cmd).to_string();
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                "install it (scripts/setup installs everything the testbed needs)".to_string()
            } else {
                hint.to_string()
            },
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_timeout(&mut child, COMMAND_LIMIT) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = terminate(&mut child, Duration::from_secs(1));
            return Err(CommandError::TimedOut { command });
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        return Ok(String::from_utf8_lossy(&stdout).into_owned());
    }
    Err(CommandError::Failed {
        command,
        status: status.to_string(),
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        hint: hint.to_string(),
    })
}

/// Builds a [`Command`] from a program and arguments.
pub fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_failure_and_absence() {
        assert_eq!(run(&mut cmd("echo", ["hi"]), "").unwrap(), "hi\n");
        let failed = run(&mut cmd("sh", ["-c", "echo oops >&2; exit 3"]), "try again").unwrap_err();
        assert!(matches!(&failed, CommandError::Failed { stderr, .. } if stderr == "oops"));
        assert!(failed.to_string().contains("try again"));
        let missing = run(&mut cmd("bypasslab-no-such-program", [""; 0]), "").unwrap_err();
        assert!(matches!(missing, CommandError::Spawn { .. }));
    }
}
