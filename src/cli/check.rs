//! `lenscap check-config FILE`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy::Policy;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The policy file to validate.
    file: PathBuf,
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match Policy::from_file(&args.file) {
        Ok(policy) => {
            println!("{}: ok", args.file.display());
            print!("{}", policy.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
