//! Running iproute2 / tc / ethtool and keeping what is needed to explain a
//! failure: the command line, its exit status, its stderr and what to do.

use std::fmt;
use std::process::{Command, Stdio};

/// A failed external command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started at all (usually: not installed).
    #[error("`{command}` could not start: {source}; {hint}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
        hint: String,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}; {hint}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
        hint: String,
    },
}

impl CommandError {
    /// The stderr of a command that ran and failed; empty otherwise.
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } => stderr,
            CommandError::Spawn { .. } => "",
        }
    }
}

/// A command line rendered for messages.
pub struct Shown<'a>(pub &'a Command);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.get_program().to_string_lossy())?;
        for a in self.0.get_args() {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

/// Runs `cmd` to completion; returns its stdout. `hint` says what the user
/// can do when it fails.
pub fn run(cmd: &mut Command, hint: &str) -> Result<String, CommandError> {
    let command = Shown(cmd).to_string();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                "install it (scripts/setup installs everything the testbed needs)".to_string()
            } else {
                hint.to_string()
            },
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(CommandError::Failed {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
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
