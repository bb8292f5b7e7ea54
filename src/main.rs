//! The `countersign` binary: parse the command line, then hand over to the library.

use clap::Parser;

// A page of requests makes many small, short-lived allocations: with glibc's allocator
// malloc/free/consolidation were about a quarter of a list page's CPU (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    countersign::cli::Cli::parse().run()
}
