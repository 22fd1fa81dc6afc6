//! How a child process ended: what a supervisor reports of its own
//! children and what a remote supervisor reports of the children on its
//! host, in the same words.

use std::fmt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// How a child process ended, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Ending {
    /// Exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Killed by this signal.
    Signaled {
        /// Signal number.
        signal: i32,
        /// Signal name, e.g. `SIGKILL`.
        name: String,
    },
}

impl Ending {
    /// Classifies an exit status.
    #[must_use]
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited { code },
            (None, Some(signal)) => Self::Signaled {
                signal,
                name: Signal::try_from(signal)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|_| format!("signal {signal}")),
            },
            (None, None) => Self::Exited { code: -1 },
        }
    }

    /// Whether the process ended cleanly (exit code 0).
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with code {code}"),
            Self::Signaled { name, .. } => write!(f, "was killed by {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_read_as_words_and_round_trip() {
        let killed = Ending::Signaled {
            signal: 9,
            name: "SIGKILL".into(),
        };
        assert_eq!(killed.to_string(), "was killed by SIGKILL");
        let json = serde_json::to_string(&killed).unwrap();
        assert_eq!(serde_json::from_str::<Ending>(&json).unwrap(), killed);
        assert!(Ending::Exited { code: 0 }.is_success());
        assert!(!Ending::Exited { code: 3 }.is_success());
    }
}
