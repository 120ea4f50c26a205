//! The `gguf-prune` command line: parses arguments, runs one command, maps errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_default_sigpipe();
    cli::install_ctrlc_handler();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", render(&err));
            ExitCode::from(if is_interrupted(&err) { 130 } else { 1 })
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without repeating a cause that its
/// parent's message already ends with (our errors print their cause themselves).
fn render(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(gguf_prune::Error::OutputExists { .. }) = err.root_cause().downcast_ref() {
        // The library does not name flags; every command that writes has --force.
        line.push_str(" (use --force to replace it)");
    }
    line
}

fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<gguf_prune::Error>(),
            Some(gguf_prune::Error::Interrupted)
        )
    })
}

/// `gguf-prune inspect model.gguf | head` should end quietly when `head` closes the pipe, as
/// other command-line tools do, instead of panicking in `println!`: Rust ignores SIGPIPE by
/// default, so put the default action back.
fn restore_default_sigpipe() {
    // SAFETY: called once at start-up, before any thread is spawned; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
