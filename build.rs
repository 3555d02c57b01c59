//! Generates include/ratchetkit.h from src/ffi with cbindgen, and sets the
//! SONAME of the shared library.

use std::error::Error;
use std::path::PathBuf;

include!("src/ffi/abi.rs");

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libratchetkit.so.{RK_ABI_VERSION}");
    }

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))?;
    let (major, minor, patch) = (
        std::env::var("CARGO_PKG_VERSION_MAJOR")?,
        std::env::var("CARGO_PKG_VERSION_MINOR")?,
        std::env::var("CARGO_PKG_VERSION_PATCH")?,
    );
    let version = std::env::var("CARGO_PKG_VERSION")?;
    let mut after = config.after_includes.take().unwrap_or_default();
    after.push_str(&format!(
        "\n\n/** The version of this header (the library's is rk_version()). */\n\
         #define RK_VERSION_MAJOR {major}\n\
         #define RK_VERSION_MINOR {minor}\n\
         #define RK_VERSION_PATCH {patch}\n\
         #define RK_VERSION_STRING \"{version}\""
    ));
    config.after_includes = Some(after);

    let generated = out_dir.join("ratchetkit.h");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .generate()?
        .write_to_file(&generated);

    // Copy into the source tree only when the bytes differ, so that an
    // unchanged header keeps its timestamp. A read-only source tree (a
    // packaged crate) only gets a warning: the check that the committed
    // header is current is `make c-header`.
    let header = crate_dir.join("include/ratchetkit.h");
    let new = std::fs::read(&generated)?;
    if std::fs::read(&header).ok().as_deref() != Some(new.as_slice()) {
        let written = std::fs::create_dir_all(crate_dir.join("include"))
            .and_then(|()| std::fs::write(&header, &new));
        if let Err(e) = written {
            println!(
                "cargo:warning=could not update {}: {e} (generated copy: {})",
                header.display(),
                generated.display()
            );
        }
    }
    Ok(())
}
