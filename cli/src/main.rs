//! `blkio`: inspect, benchmark and copy block devices through libblkio.
//!
//! The commands are `info`, `bench`, `copy` and `completions`; the command
//! line is described with clap (see [`cli`]). Errors print
//! `blkio: <what>: <message>` on stderr and exit with 2 for usage errors
//! (bad options, drivers, properties or values) and 1 for device and I/O
//! errors.

mod args;
mod bench;
mod cli;
mod copy;
mod device;
mod histogram;
mod info;
mod output;

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use clap::FromArgMatches as _;

/// Why a command failed: the message and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

impl Failure {
    /// A bad command line, driver, property or value (exit status 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure {
            code: 2,
            msg: msg.into(),
        }
    }

    /// A device or I/O failure (exit status 1).
    pub fn device(msg: impl Into<String>) -> Self {
        Failure {
            code: 1,
            msg: msg.into(),
        }
    }
}

/// Writes a completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "blkio", &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Failure::device(format!("writing the completion script: {e}")))
}

fn run(args: cli::Cli) -> Result<(), Failure> {
    match args.command {
        cli::Command::Info(a) => info::run(a),
        cli::Command::Bench(a) => bench::run(a),
        cli::Command::Copy(a) => copy::run(a),
        cli::Command::Completions { shell } => completions(shell),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let parsed = cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| cli::Cli::from_arg_matches(&m));
    let result = match parsed {
        Ok(args) => run(args),
        // --help and --version are "errors" that print to stdout.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Ok(())
        }
        Err(e) => Err(Failure::usage(cli::usage_message(&e, &argv))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("blkio: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
