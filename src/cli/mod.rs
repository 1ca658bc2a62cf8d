//! The `lenscap` command line: argument parsing (cheap) first, then the expensive objects
//! (policy, matchers) built once per command.

mod check;
mod explain;
mod replay;
mod serve;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::policy::Policy;

/// The `lenscap` command.
#[derive(Debug, Parser)]
#[command(
    name = "lenscap",
    version,
    about = "Keeps bulk image crawlers and AI scrapers off photo galleries"
)]
pub struct Cli {
    /// Without a command, `lenscap` runs `lenscap serve` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a folder of photos or proxy an upstream site behind Lenscap (the default).
    Serve(serve::Args),
    /// Print the verdict and its reasons for one request.
    Explain(explain::Args),
    /// Run an access log through the policy in log time and summarise what it would do.
    Replay(replay::Args),
    /// Validate a policy file and print a short summary.
    CheckConfig(check::Args),
    /// Play humans and crawlers against a site and report what got through.
    Simulate(simulate::Args),
}

/// Parses the process arguments and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli
        .command
        .unwrap_or(Command::Serve(serve::Args::default()))
    {
        Command::Serve(args) => serve::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Replay(args) => replay::run(args),
        Command::CheckConfig(args) => check::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lenscap: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The policy at `path`, or the embedded default.
fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    Ok(match path {
        Some(path) => Policy::from_file(path)?,
        None => Policy::embedded()?,
    })
}
