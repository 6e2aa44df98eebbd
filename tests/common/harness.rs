//! A small test runner for the integration tests that libtest serves badly (`harness =
//! false` in Cargo.toml):
//!
//! - child processes: the test binary is re-run in a role (`ChildSpec` in the environment)
//!   and runs only that role, so the entry point is not a test that "passes" in every
//!   ordinary run;
//! - tests that cannot run on this machine (not root, no huge pages, under Miri) report
//!   themselves **skipped**, with the reason, in the output and in the summary, instead of
//!   passing silently;
//! - tests run one at a time on the main thread (these tests start processes that spin, or
//!   fork: they would serialize on two cores anyway).
//!
//! It takes the arguments that matter (`NAME` filters, `--exact`, `--list`, and ignores
//! the rest, e.g. `--nocapture`, `--test-threads`) and prints what libtest prints.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// What a test that did not panic did.
#[derive(Debug)]
pub enum Outcome {
    Passed,
    /// It could not run here; the reason is printed.
    Skipped(String),
}

/// A test: fails by panicking.
pub type Test = (&'static str, fn() -> Outcome);

/// A test that always runs: `case!(name)`.
#[macro_export]
macro_rules! case {
    ($f:ident) => {
        (stringify!($f), || -> $crate::common::harness::Outcome {
            $f();
            $crate::common::harness::Outcome::Passed
        })
    };
}

/// A test that may say it was skipped: `skippable!(name)` for `fn name() -> Outcome`.
#[macro_export]
macro_rules! skippable {
    ($f:ident) => {
        (
            stringify!($f),
            $f as fn() -> $crate::common::harness::Outcome,
        )
    };
}

/// Run the child role if this process is a child (`child(&spec)`, then exit), or the
/// selected tests.
pub fn main(child: Option<fn(&super::ChildSpec)>, tests: &[Test]) {
    if let Some(spec) = super::ChildSpec::from_env() {
        match child {
            Some(run) => run(&spec),
            None => panic!(
                "this test binary has no child roles (asked for {:?})",
                spec.role
            ),
        }
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    // Flags with a value: skip the value.
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--test-threads" | "--skip" | "--color" | "--format" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => filters.push(a.as_str()),
        }
    }
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    println!("\nrunning {} tests", selected.len());
    let start = Instant::now();
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for (name, f) in &selected {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Outcome::Passed) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Ok(Outcome::Skipped(why)) => {
                println!("test {name} ... skipped: {why}");
                skipped += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {skipped} skipped; 0 measured; {} \
         filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        tests.len() - selected.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
