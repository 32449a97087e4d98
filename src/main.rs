//! The `mailtrail` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    mailtrail::cli::main()
}
