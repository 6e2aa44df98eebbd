//! The committed C header (`include/shmcast.h`) must be exactly what cbindgen generates
//! from the current sources. `SHMCAST_BLESS=1 cargo test -p shmcast-ffi --test header`
//! rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses ffi/src");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let header = dir.join("include/shmcast.h");
    if std::env::var_os("SHMCAST_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/shmcast.h");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    if committed != generated {
        let committed = String::from_utf8_lossy(&committed);
        let generated = String::from_utf8_lossy(&generated);
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "ffi/include/shmcast.h is stale (first difference at line {}):\n  committed: {:?}\n  \
             generated: {:?}\nregenerate it with `SHMCAST_BLESS=1 cargo test -p shmcast-ffi \
             --test header` and commit it",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}
