//! `blkio info DRIVER key=value... [--json]`: connects to the device (and
//! starts it if a property needs that) and prints every property with its
//! type, access and value or error.

use crate::api::{ApiError, Instance};
use crate::args::{self, Arg, DeviceSpec, Parser};
use crate::device::{self, PropInfo};
use crate::output::{self, JsonObject};
use crate::Failure;

pub const HELP: &str = "\
Usage: blkio info DRIVER [NAME=VALUE...] [--json]

Connects to the device and prints every property of the driver with its
type, access and value (or why it has none). Properties given on the
command line are set first (each in the state that accepts it).

Access: r = read-only; rw:created = writable before connect;
rw:connected = writable between connect and start.

Options:
  --json     print one JSON object instead of a table
  -h, --help show this help

Example:
  blkio info io_uring path=/dev/nvme0n1 direct=true
";

pub fn run(mut p: Parser) -> Result<(), Failure> {
    let mut spec = DeviceSpec::default();
    let mut json = false;
    while let Some(arg) = p.next_arg() {
        match arg {
            Arg::Opt(name, _) if name == "help" => {
                print!("{HELP}");
                return Ok(());
            }
            Arg::Opt(name, None) if name == "json" => json = true,
            Arg::Opt(name, _) => return Err(args::unknown_option(&name)),
            Arg::Pos(w) if spec.driver.is_empty() => spec.driver = w,
            Arg::Pos(w) => spec.props.push(args::parse_prop(&w)?),
        }
    }
    if spec.driver.is_empty() {
        return Err(Failure::usage(
            "info: missing DRIVER (see 'blkio info --help')",
        ));
    }
    let inst = device::open(&spec, false)?;
    let table = device::property_table(&inst)?;
    let mut values = read_all(&inst, &table);
    // Some values may only exist once the device is started.
    if values
        .iter()
        .any(|v| matches!(v, Err(e) if e.errno == libc::EBUSY))
    {
        inst.start()
            .map_err(|e| Failure::device(format!("starting {}: {}", spec.describe(), e.msg)))?;
        values = read_all(&inst, &table);
    }
    if json {
        println!("{}", to_json(&spec.driver, &table, &values));
    } else {
        print!("{}", to_text(&table, &values));
    }
    Ok(())
}

fn read_all(inst: &Instance, table: &[PropInfo]) -> Vec<Result<String, ApiError>> {
    table.iter().map(|p| inst.get_str(&p.name)).collect()
}

fn to_text(table: &[PropInfo], values: &[Result<String, ApiError>]) -> String {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "TYPE".into(),
        "ACCESS".into(),
        "VALUE".into(),
    ]];
    for (p, v) in table.iter().zip(values) {
        let shown = match v {
            Ok(v) => v.clone(),
            Err(e) => format!("({})", e.msg),
        };
        rows.push(vec![p.name.clone(), p.ty.clone(), p.access.clone(), shown]);
    }
    output::table(&rows)
}

/// The value as typed JSON (numbers and booleans unquoted).
fn json_value(ty: &str, v: &str) -> String {
    match ty {
        "bool" | "int" | "uint64" => v.to_owned(),
        _ => output::json_str(v),
    }
}

fn to_json(driver: &str, table: &[PropInfo], values: &[Result<String, ApiError>]) -> String {
    let props: Vec<String> = table
        .iter()
        .zip(values)
        .map(|(p, v)| {
            let o = JsonObject::new()
                .str("name", &p.name)
                .str("type", &p.ty)
                .str("access", &p.access);
            match v {
                Ok(v) => o.raw("value", json_value(&p.ty, v)),
                Err(e) => o.raw(
                    "error",
                    JsonObject::new()
                        .num("errno", e.errno)
                        .str("message", &e.msg)
                        .build(),
                ),
            }
            .build()
        })
        .collect();
    JsonObject::new()
        .str("driver", driver)
        .raw("properties", output::json_array(&props))
        .build()
}
