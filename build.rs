//! Build script: gives the shared library its SONAME and generates the C
//! header with cbindgen into OUT_DIR. The committed `include/blkio.h` must
//! equal that output (a unit test checks it); `BLKIO_UPDATE_HEADER=1`
//! rewrites the committed copy.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libblkio.so.1");
    println!("cargo:rerun-if-changed=src/capi");
    println!("cargo:rerun-if-changed=src/core/request.rs");
    println!("cargo:rerun-if-changed=src/core/region.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BLKIO_UPDATE_HEADER");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("blkio.h");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .with_src(root.join("src/core/request.rs"))
        .with_src(root.join("src/core/region.rs"))
        .generate()
        .expect("generating blkio.h")
        .write_to_file(&out);
    if env::var_os("BLKIO_UPDATE_HEADER").is_some() {
        std::fs::copy(&out, root.join("include/blkio.h")).expect("updating include/blkio.h");
    }
}
