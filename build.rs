//! Links the `pocketbrain` binary with packed relative relocations (RELR)
//! where the C library can load them (glibc 2.36 or newer).
//!
//! The executable is position-independent and carries about 77,000
//! relative relocations. As RELA entries they take 1.8 MB, which the
//! dynamic loader reads in full at every start: that was 1.8 MB of the
//! idle bridge's resident memory and part of its cold start. As RELR they
//! take 28 KB. A binary linked this way needs the glibc version
//! `GLIBC_ABI_DT_RELR` to run, so it is used only when the glibc linked
//! against has it (a native build; its linker, binutils 2.38 or newer on
//! such systems, knows the flag).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("TARGET") == var("HOST")
        && glibc_loads_relr()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C compiler's libc.so.6 defines `GLIBC_ABI_DT_RELR`.
fn glibc_loads_relr() -> bool {
    let Ok(out) = Command::new("cc")
        .arg("-print-file-name=libc.so.6")
        .output()
    else {
        return false;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::read(path).is_ok_and(|lib| {
        lib.windows(b"GLIBC_ABI_DT_RELR".len())
            .any(|w| w == b"GLIBC_ABI_DT_RELR")
    })
}
