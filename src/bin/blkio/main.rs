//! `blkio`: inspect, benchmark and copy block devices through libblkio.
//!
//! Every device access goes through the library's public C API (see
//! [`api`]); the commands are `info`, `bench` and `copy`. Errors print
//! `blkio: <what>: <libblkio message>` on stderr and exit with 2 for usage
//! errors (bad options, drivers, properties or values) and 1 for device
//! and I/O errors.

mod api;
mod args;
mod bench;
mod copy;
mod device;
mod histogram;
mod info;
mod output;

use std::process::ExitCode;

use args::{Arg, Parser};

const HELP: &str = "\
Usage: blkio COMMAND [ARGS...]

Block device I/O through libblkio.

Commands:
  info DRIVER [NAME=VALUE...]    print every property of a device
  bench DRIVER [NAME=VALUE...]   measure IOPS, bandwidth and latency
  copy SRC DST                   copy a device, keeping holes

Options:
  -h, --help     show this help (blkio COMMAND --help for a command's)
  --version      show the version

Drivers: DRIVERS
Exit status: 0 success, 1 device or I/O error, 2 usage error.
";

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

fn run(mut p: Parser) -> Result<(), Failure> {
    match p.next_arg() {
        Some(Arg::Pos(cmd)) => match cmd.as_str() {
            "info" => info::run(p),
            "bench" => bench::run(p),
            "copy" => copy::run(p),
            _ => Err(Failure::usage(format!(
                "unknown command \"{cmd}\" (see 'blkio --help')"
            ))),
        },
        Some(Arg::Opt(name, _)) if name == "help" => {
            print!(
                "{}",
                HELP.replace("DRIVERS", &blkio::drivers::NAMES.join(", "))
            );
            Ok(())
        }
        Some(Arg::Opt(name, _)) if name == "version" => {
            println!("blkio {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(Arg::Opt(name, _)) => Err(args::unknown_option(&name)),
        None => Err(Failure::usage("missing command (see 'blkio --help')")),
    }
}

fn main() -> ExitCode {
    match run(Parser::new(std::env::args().skip(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("blkio: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
