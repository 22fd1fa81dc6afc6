//! A typed command line rendered back into argv.
//!
//! Each child's flags are declared once, as a clap derive in this crate.
//! The child parses them; the supervisor fills the same struct and renders
//! it here, by walking clap's own description of the struct (each
//! argument's id, long name, action and default) beside the struct's serde
//! form (one entry per field, named like the argument's id). No flag name
//! is written twice, and [`reparse`] proves in tests that what is rendered
//! parses back to the same value.
//!
//! Rules for an argument struct: every field is `Serialize` into a string,
//! a number, a bool, a list or null (`None`); a `#[command(flatten)]` field
//! is also `#[serde(flatten)]`; values equal to an argument's default are
//! left out, so a rendered command line shows what differs.

use std::ffi::OsString;

use clap::{ArgAction, CommandFactory, Parser};
use serde::Serialize;
use serde_json::Value;

/// Why a struct could not be rendered (a struct that breaks the rules
/// above; the round-trip tests of each argument struct catch it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The struct is not a map of fields.
    #[error("the argument struct serialises to {0}, not to a map of fields")]
    NotAMap(String),
    /// A field has no flag to carry it.
    #[error("argument `{0}` has no long flag")]
    NoLongFlag(String),
    /// A field's value is a nested structure.
    #[error("argument `{id}` holds {value}, which no flag can carry")]
    Unrenderable {
        /// The argument's id (its field name).
        id: String,
        /// The value.
        value: String,
    },
}

/// The flags that give `args` to the program that parses `T`.
///
/// # Errors
/// [`RenderError`] when `T` breaks the rules of this module.
pub fn to_argv<T: Serialize + CommandFactory>(args: &T) -> Result<Vec<String>, RenderError> {
    let fields = match serde_json::to_value(args) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => return Err(RenderError::NotAMap(other.to_string())),
        Err(e) => return Err(RenderError::NotAMap(e.to_string())),
    };
    let command = T::command();
    let mut argv = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(value) = fields.get(id) else {
            continue; // help, version: clap's own
        };
        let long = || {
            arg.get_long()
                .map(|l| format!("--{l}"))
                .ok_or_else(|| RenderError::NoLongFlag(id.to_owned()))
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        match (arg.get_action(), value) {
            (_, Value::Null) => {}
            (ArgAction::SetTrue, Value::Bool(on)) => {
                if *on {
                    argv.push(long()?);
                }
            }
            (ArgAction::SetFalse, Value::Bool(on)) => {
                if !*on {
                    argv.push(long()?);
                }
            }
            (_, Value::Array(items)) => {
                let items = items
                    .iter()
                    .map(|item| scalar(id, item))
                    .collect::<Result<Vec<_>, _>>()?;
                if items == defaults {
                    continue;
                }
                match arg.get_value_delimiter() {
                    Some(delimiter) => {
                        argv.push(long()?);
                        argv.push(items.join(&delimiter.to_string()));
                    }
                    None => {
                        for item in items {
                            argv.push(long()?);
                            argv.push(item);
                        }
                    }
                }
            }
            (_, value) => {
                let text = scalar(id, value)?;
                if defaults.len() == 1 && same_value(&defaults[0], &text) {
                    continue;
                }
                argv.push(long()?);
                argv.push(text);
            }
        }
    }
    Ok(argv)
}

/// A value as one command-line word.
fn scalar(id: &str, value: &Value) -> Result<String, RenderError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(RenderError::Unrenderable {
            id: id.to_owned(),
            value: other.to_string(),
        }),
    }
}

/// Whether a default's text and a rendered value mean the same (`1000` and
/// `1000.0` for a float flag).
fn same_value(default: &str, rendered: &str) -> bool {
    default == rendered
        || matches!(
            (default.parse::<f64>(), rendered.parse::<f64>()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Parses `argv` (without the program name) as the program would: the other
/// half of [`to_argv`], for tests and for checking a recorded command.
///
/// # Errors
/// clap's error for a command line the program would refuse.
pub fn reparse<T: Parser>(argv: &[String]) -> Result<T, clap::Error> {
    let program = OsString::from(T::command().get_name().to_owned());
    T::try_parse_from(std::iter::once(program).chain(argv.iter().map(OsString::from)))
}
