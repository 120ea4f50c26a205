//! The `gguf-prune` command line: parses arguments, runs one command, maps errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::install_ctrlc_handler();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(if is_interrupted(&err) { 130 } else { 1 })
        }
    }
}

fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<gguf_prune::Error>(),
            Some(gguf_prune::Error::Interrupted)
        )
    })
}
