//! Link settings for the `haneul` and `haneul-full` binaries.

fn main() {
    // The binary is position independent (address randomisation), so the loader fixes up
    // about 51,000 pointers at every start. Packed relative relocations (DT_RELR, glibc 2.36
    // and binutils 2.38 or later) describe them in a few kilobytes instead of 1.2 MB, which a
    // short-lived `haneul submit` otherwise reads and walks each time.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
