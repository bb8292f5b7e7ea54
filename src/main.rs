//! The `countersign` binary: parse the command line, then hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    countersign::cli::Cli::parse().run()
}
