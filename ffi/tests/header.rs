//! The committed C header (`include/shmcast.h`) must match the sources.
//!
//! - Always: every function, constant, type and status code the sources export is declared
//!   in the header, and every function the header declares is exported.
//! - With `--features header-check` (`.ci/ffi.sh`): the header is exactly what cbindgen
//!   generates from the sources. `SHMCAST_BLESS=1 cargo test -p shmcast-ffi --features
//!   header-check --test header` rewrites it.

use std::collections::BTreeSet;
use std::path::Path;

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header() -> String {
    std::fs::read_to_string(dir().join("include/shmcast.h")).expect("read include/shmcast.h")
}

/// The identifier following `prefix` on each line of `text` that has it.
fn names_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn every_exported_item_is_declared_in_the_committed_header() {
    let header = header();
    let mut exported_fns = BTreeSet::new();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir().join("src")).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read source");
        let fns = names_after(&src, "pub unsafe extern \"C\" fn ")
            .into_iter()
            .chain(names_after(&src, "pub extern \"C\" fn "));
        for f in fns {
            exported_fns.insert(f.to_string());
            if !header.contains(&format!(" {f}(")) && !header.contains(&format!("*{f}(")) {
                missing.push(format!("function {f}"));
            }
        }
        for c in names_after(&src, "pub const ") {
            if !header.contains(&format!("#define {c} ")) {
                missing.push(format!("constant {c}"));
            }
        }
        for t in names_after(&src, "pub struct ")
            .into_iter()
            .chain(names_after(&src, "pub enum "))
        {
            if !header.contains(&format!("typedef struct {t} "))
                && !header.contains(&format!("enum {t}"))
            {
                missing.push(format!("type {t}"));
            }
        }
        for line in src.lines().map(str::trim_start) {
            // Status codes: `SHMCAST_X = n,` in the enum.
            if let Some((name, value)) = line.split_once(" = ") {
                let value = value.trim_end_matches(',');
                let is_code = name.starts_with("SHMCAST_") && value.parse::<i32>().is_ok();
                if is_code && !header.contains(&format!("{name} = {value}")) {
                    missing.push(format!("status {name}"));
                }
            }
        }
    }
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|l| l.contains('(') && !l.starts_with([' ', '#', '*', '/']))
        .filter(|l| !l.starts_with("typedef"))
        .filter_map(|l| l.split('(').next())
        .filter_map(|decl| decl.split_whitespace().last())
        .map(|n| n.trim_start_matches('*').to_string())
        .filter(|n| n.starts_with("shmcast_"))
        .collect();
    let stale: Vec<_> = declared.difference(&exported_fns).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ffi/include/shmcast.h is stale: missing {missing:?}, declares functions that no \
         longer exist {stale:?}; regenerate it with `SHMCAST_BLESS=1 cargo test -p shmcast-ffi \
         --features header-check --test header` and commit it"
    );
    assert!(exported_fns.len() > 30, "found only {exported_fns:?}");
}

#[cfg(feature = "header-check")]
#[test]
fn committed_header_is_what_cbindgen_generates() {
    let config = cbindgen::Config::from_file(dir().join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir().join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses ffi/src");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir().join("include/shmcast.h");
    if std::env::var_os("SHMCAST_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/shmcast.h");
        return;
    }
    let committed = header();
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "ffi/include/shmcast.h is stale (first difference at line {}):\n  committed: {:?}\n  \
             generated: {:?}\nregenerate it with `SHMCAST_BLESS=1 cargo test -p shmcast-ffi \
             --features header-check --test header` and commit it",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}
