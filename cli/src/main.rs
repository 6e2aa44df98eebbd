//! The `shmcast` command-line tool: see the `shmcast_cli` crate documentation (README.md).

fn main() -> std::process::ExitCode {
    shmcast_cli::run()
}
