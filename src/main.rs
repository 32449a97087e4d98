//! The `mailtrail` binary: everything lives in the library.

/// Ingest allocates a few small strings per log event; mimalloc serves
/// them markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mailtrail::cli::main()
}
