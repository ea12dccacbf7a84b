//! The command line, described with clap: the commands, the device words
//! they share, and clap's parse errors reworded into the tool's one-line
//! `blkio: <what>: <message>` form.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::args::{self, DeviceSpec};
use crate::{bench, copy, info};

/// Every help page starts with its usage line, like the tool's manual page.
pub const HELP_TEMPLATE: &str = "\
{usage-heading} {usage}

{about-with-newline}
{all-args}{after-help}";

/// Block device I/O through libblkio.
#[derive(Parser)]
#[command(
    name = "blkio",
    version,
    override_usage = "blkio COMMAND [ARGS...]",
    help_template = HELP_TEMPLATE,
    // An empty command line is a usage error (exit 2), not a help page.
    arg_required_else_help = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Info(info::Args),
    Bench(bench::Args),
    Copy(copy::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(help_template = HELP_TEMPLATE)]
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `DRIVER [NAME=VALUE...]`, as `info` and `bench` take them.
#[derive(clap::Args)]
pub struct DeviceArgs {
    /// The driver: io_uring, nvme-io_uring, virtio-blk-vhost-user, ...
    pub driver: String,
    /// Properties to set, each in the state that accepts it
    #[arg(value_name = "NAME=VALUE", value_parser = args::parse_prop)]
    pub props: Vec<(String, String)>,
}

impl DeviceArgs {
    pub fn spec(&self) -> DeviceSpec {
        DeviceSpec {
            driver: self.driver.clone(),
            props: self.props.clone(),
            plain_path: None,
        }
    }
}

/// The whole command line, with the driver names (known only at run time)
/// under the top-level help.
pub fn command() -> clap::Command {
    Cli::command().after_help(format!(
        "Drivers: {}\nExit status: 0 success, 1 device or I/O error, 2 usage error.",
        blkio::DRIVERS.join(", ")
    ))
}

/// The string of a context value clap attached to an error.
fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => Some(v.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The command word of `argv` ("info", ...), if it names a command.
fn command_word(argv: &[OsString]) -> Option<String> {
    let word = argv
        .iter()
        .skip(1)
        .map(|w| w.to_string_lossy())
        .find(|w| !w.starts_with('-'))?;
    Cli::command()
        .find_subcommand(word.as_ref())
        .map(|c| c.get_name().to_owned())
}

/// `--bs` of clap's `--bs <SIZE>`, `SHELL` of a positional's `<SHELL>`.
fn option_name(arg: &str) -> &str {
    if arg.starts_with('-') {
        arg.split_whitespace().next().unwrap_or(arg)
    } else {
        arg.trim_matches(['<', '>', '[', ']', '.'])
    }
}

/// One line saying what is wrong with the command line: `--bs: invalid
/// size "4q" (...)`, `--nope: unknown option`, `info: missing DRIVER (see
/// 'blkio info --help')`.
pub fn usage_message(e: &clap::Error, argv: &[OsString]) -> String {
    let cmd = command_word(argv);
    let see = match &cmd {
        Some(c) => format!("see 'blkio {c} --help'"),
        None => "see 'blkio --help'".to_owned(),
    };
    let arg = context(e, ContextKind::InvalidArg).unwrap_or_default();
    let value = context(e, ContextKind::InvalidValue).unwrap_or_default();
    match e.kind() {
        ErrorKind::InvalidSubcommand => format!(
            "unknown command \"{}\" (see 'blkio --help')",
            context(e, ContextKind::InvalidSubcommand).unwrap_or_default()
        ),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "missing command (see 'blkio --help')".to_owned()
        }
        ErrorKind::UnknownArgument if arg.starts_with('-') => format!("{arg}: unknown option"),
        ErrorKind::UnknownArgument => format!("unexpected argument \"{arg}\" ({see})"),
        ErrorKind::MissingRequiredArgument => {
            let missing = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(v)) => v
                    .iter()
                    .map(|a| a.trim_matches(['<', '>']))
                    .collect::<Vec<_>>()
                    .join(" and "),
                _ => arg.clone(),
            };
            match &cmd {
                Some(c) => format!("{c}: missing {missing} ({see})"),
                None => format!("missing {missing} ({see})"),
            }
        }
        ErrorKind::InvalidValue if value.is_empty() => {
            format!("{}: missing value", option_name(&arg))
        }
        ErrorKind::InvalidValue => {
            let valid = context(e, ContextKind::ValidValue).unwrap_or_default();
            format!("{}: invalid value \"{value}\" ({valid})", option_name(&arg))
        }
        // Our value parsers word the message; options get their name in
        // front, positionals (NAME=VALUE, SRC, DST) name the word already.
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("invalid value \"{value}\""));
            if arg.starts_with('-') {
                format!("{}: {why}", option_name(&arg))
            } else {
                why
            }
        }
        _ => {
            // Anything else: clap's own first line, without its "error: ".
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            format!("{} ({see})", first.trim_start_matches("error: "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(words: &[&str]) -> String {
        let argv: Vec<OsString> = std::iter::once("blkio")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        let e = command()
            .try_get_matches_from(&argv)
            .expect_err("a usage error");
        assert!(e.use_stderr(), "{words:?} is not an error");
        usage_message(&e, &argv)
    }

    #[test]
    fn command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn errors_read_as_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing command (see 'blkio --help')"),
            (&["frob"], "unknown command \"frob\" (see 'blkio --help')"),
            (&["info"], "info: missing DRIVER (see 'blkio info --help')"),
            (
                &["copy", "a"],
                "copy: missing DST (see 'blkio copy --help')",
            ),
            (&["bench", "x", "--nope"], "--nope: unknown option"),
            (&["bench", "x", "--bs"], "--bs: missing value"),
            (
                &["bench", "x", "--bs", "4q"],
                "--bs: invalid size \"4q\" (e.g. 4096, 4k, 64KiB, 1G)",
            ),
            (
                &["bench", "x", "--iodepth", "0"],
                "--iodepth: 0 is not in 1..=65536",
            ),
            (
                &["bench", "x", "--mode", "fast"],
                "--mode: invalid value \"fast\" (block, event, poll, pollq)",
            ),
            (
                &["info", "x", "path"],
                "\"path\": expected a property as name=value",
            ),
            (
                &["copy", "a", "b", "c"],
                "unexpected argument \"c\" (see 'blkio copy --help')",
            ),
            (
                &["completions", "tcsh"],
                "SHELL: invalid value \"tcsh\" (bash, elvish, fish, powershell, zsh)",
            ),
        ];
        for (words, want) in cases {
            assert_eq!(message(words), *want, "{words:?}");
        }
    }
}
