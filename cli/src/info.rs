//! `blkio info DRIVER key=value... [--json]`: connects to the device (and
//! starts it if a property needs that) and prints every property with its
//! type, access and value or error.

use serde::Serialize;

use blkio::{Blkio, ErrorKind, State};

use crate::cli::{DeviceArgs, HELP_TEMPLATE};
use crate::device::{self, PropInfo};
use crate::output;
use crate::Failure;

const ABOUT: &str = "\
Connects to the device and prints every property of the driver with its
type, access and value (or why it has none). Properties given on the
command line are set first (each in the state that accepts it).

Access: r = read-only; rw:created = writable before connect;
rw:connected = writable between connect and start.";

/// Print every property of a device
#[derive(clap::Args)]
#[command(
    help_template = HELP_TEMPLATE,
    long_about = ABOUT,
    after_help = "Example:\n  blkio info io_uring path=/dev/nvme0n1 direct=true"
)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArgs,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let spec = args.device.spec();
    let inst = device::open(&spec)?;
    let table = device::property_table(&inst);
    let values = read_all(&inst, &table);
    // Some values may only exist once the device is started: reading them
    // on a connected instance fails with ErrorKind::WrongState.
    let values = if values
        .iter()
        .any(|v| matches!(v, Err(e) if e.kind() == ErrorKind::WrongState))
    {
        let inst = device::start(inst, &spec)?;
        read_all(&inst, &table)
    } else {
        values
    };
    if args.json {
        println!("{}", to_json(&spec.driver, &table, &values));
    } else {
        print!("{}", to_text(&table, &values));
    }
    Ok(())
}

fn read_all<S: State>(inst: &Blkio<S>, table: &[PropInfo]) -> Vec<Result<String, blkio::Error>> {
    table.iter().map(|p| inst.get::<String>(&p.name)).collect()
}

fn to_text(table: &[PropInfo], values: &[Result<String, blkio::Error>]) -> String {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "TYPE".into(),
        "ACCESS".into(),
        "VALUE".into(),
    ]];
    for (p, v) in table.iter().zip(values) {
        let shown = match v {
            Ok(v) => v.clone(),
            Err(e) => format!("({})", e.message()),
        };
        rows.push(vec![p.name.clone(), p.ty.clone(), p.access.clone(), shown]);
    }
    output::table(&rows)
}

/// `blkio info --json`: `{"driver": ..., "properties": [...]}`.
#[derive(Serialize)]
struct InfoJson<'a> {
    driver: &'a str,
    properties: Vec<PropJson<'a>>,
}

/// One property: name, type, access and either `value` or `error`.
#[derive(Serialize)]
struct PropJson<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    access: &'a str,
    #[serde(flatten)]
    outcome: Outcome<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome<'a> {
    Value(serde_json::Value),
    Error { errno: i32, message: &'a str },
}

/// The value as typed JSON: numbers and booleans unquoted (a string if the
/// text does not parse as its type).
fn json_value(ty: &str, v: &str) -> serde_json::Value {
    use serde_json::Value;
    let typed = match ty {
        "bool" => v.parse::<bool>().ok().map(Value::from),
        "int" => v.parse::<i64>().ok().map(Value::from),
        "uint64" => v.parse::<u64>().ok().map(Value::from),
        _ => None,
    };
    typed.unwrap_or_else(|| Value::from(v))
}

fn to_json(driver: &str, table: &[PropInfo], values: &[Result<String, blkio::Error>]) -> String {
    let properties = table
        .iter()
        .zip(values)
        .map(|(p, v)| PropJson {
            name: &p.name,
            ty: &p.ty,
            access: &p.access,
            outcome: match v {
                Ok(v) => Outcome::Value(json_value(&p.ty, v)),
                Err(e) => Outcome::Error {
                    errno: e.errno(),
                    message: e.message(),
                },
            },
        })
        .collect();
    serde_json::to_string(&InfoJson { driver, properties }).expect("JSON of strings and numbers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_typed_values_and_errors() {
        let table: Vec<_> = [("a", "bool"), ("b", "uint64"), ("c", "str"), ("d", "int")]
            .map(|(name, ty)| PropInfo {
                name: name.into(),
                ty: ty.into(),
                access: "r".into(),
            })
            .into();
        let values = vec![
            Ok("true".to_owned()),
            Ok("18446744073709551615".to_owned()),
            Ok("x\"y".to_owned()),
            Err(blkio::Error::new(16, "busy")),
        ];
        assert_eq!(
            to_json("io_uring", &table, &values),
            r#"{"driver":"io_uring","properties":[{"name":"a","type":"bool","access":"r","value":true},{"name":"b","type":"uint64","access":"r","value":18446744073709551615},{"name":"c","type":"str","access":"r","value":"x\"y"},{"name":"d","type":"int","access":"r","error":{"errno":16,"message":"busy"}}]}"#
        );
    }
}
