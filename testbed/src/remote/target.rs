//! A remote host as the configuration names it: `ssh://[user@]host[:port]`,
//! with the OpenSSH client options a user adds, rendered into the one
//! `ssh` command line every remote command runs through.

use std::ffi::OsStr;
use std::fmt;
use std::process::Command;
use std::str::FromStr;

/// Options every connection gets: no prompt can ever wait for a person
/// (`BatchMode`), a dead host or link is noticed within seconds
/// (`ConnectTimeout`, `ServerAlive*`), no terminal (`-T`), and nothing but
/// the command's standard streams is forwarded.
pub const BASE_OPTIONS: &[&str] = &[
    "BatchMode=yes",
    "ConnectTimeout=10",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=3",
    "ForwardAgent=no",
    "ForwardX11=no",
    "ClearAllForwardings=yes",
    "LogLevel=ERROR",
];

/// `ssh://[user@]host[:port]` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an `ssh://` URL.
    #[error("{0:?} is not an ssh:// URL: write ssh://[user@]host[:port]")]
    NotSsh(String),
    /// A user, host or port that could not be passed to ssh safely.
    #[error("{url:?}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// An ssh option that is not `Key=Value`.
    #[error("ssh option {0:?} is not of the form Key=Value (as after `ssh -o`)")]
    Option(String),
}

/// A host reached with OpenSSH's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    options: Vec<String>,
}

fn is_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || extra.contains(&c)
        })
}

impl FromStr for SshTarget {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| TargetError::Invalid {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| TargetError::NotSsh(url.to_owned()))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        if let Some(user) = user {
            if !is_name(user, &[]) {
                return Err(invalid("the user must be letters, digits, . - _"));
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing ]"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if !is_name(host, &[':']) {
            return Err(invalid(
                "the host must be a name or an address (letters, digits, . - _)",
            ));
        }
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0))
            .map(|p| p.ok_or_else(|| invalid("the port must be within 1..=65535")))
            .transpose()?;
        Ok(Self {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            options: Vec::new(),
        })
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl SshTarget {
    /// The same host with the user's `ssh -o` options (after
    /// [`BASE_OPTIONS`], so a user's `ConnectTimeout` wins: OpenSSH takes
    /// the first value of an option, so theirs go first).
    ///
    /// # Errors
    /// An option that is not `Key=Value`.
    pub fn with_options(mut self, options: &[String]) -> Result<Self, TargetError> {
        for option in options {
            let well_formed = option.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric())
            });
            if !well_formed {
                return Err(TargetError::Option(option.clone()));
            }
        }
        self.options = options.to_vec();
        Ok(self)
    }

    /// The host's name or address.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `ssh <options> [-p port] [user@]host -- <program>`: the program runs
    /// on the host, its standard streams are the local command's.
    #[must_use]
    pub fn command(&self, program: &OsStr) -> Command {
        let mut command = Command::new("ssh");
        command.arg("-T");
        for option in self
            .options
            .iter()
            .map(String::as_str)
            .chain(BASE_OPTIONS.iter().copied())
        {
            command.arg("-o").arg(option);
        }
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        let destination = match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        };
        command.arg(destination).arg("--").arg(program);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        for url in [
            "ssh://root@10.0.0.2",
            "ssh://b.example:2222",
            "ssh://u@[fe80::1]:22",
        ] {
            let target: SshTarget = url.parse().unwrap();
            assert_eq!(target.to_string(), url);
        }
        let t: SshTarget = "ssh://root@10.0.0.2:2222".parse().unwrap();
        assert_eq!(t.host(), "10.0.0.2");
        let t = t.with_options(&["UserKnownHostsFile=/k".into()]).unwrap();
        let words: Vec<String> = std::iter::once(t.command(OsStr::new("supervisor")).get_program())
            .chain(t.command(OsStr::new("supervisor")).get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(words[..4], ["ssh", "-T", "-o", "UserKnownHostsFile=/k"]);
        assert!(words.windows(2).any(|w| w == ["-o", "BatchMode=yes"]));
        assert!(words.ends_with(&[
            "-p".into(),
            "2222".into(),
            "root@10.0.0.2".into(),
            "--".into(),
            "supervisor".into()
        ]));
    }

    #[test]
    fn what_ssh_could_misread_is_refused() {
        for url in [
            "root@b",
            "http://b",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://b:0",
            "ssh://b:99999",
            "ssh://a b",
            "ssh://r;t@b",
            "ssh://[fe80::1",
        ] {
            assert!(url.parse::<SshTarget>().is_err(), "{url}");
        }
        let t: SshTarget = "ssh://b".parse().unwrap();
        assert!(t
            .clone()
            .with_options(&["-oProxyCommand=x".into()])
            .is_err());
        assert!(t.with_options(&["NoEquals".into()]).is_err());
    }
}
