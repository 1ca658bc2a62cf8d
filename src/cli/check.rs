//! `lenscap check-config FILE`: validate a policy file, including its server and site
//! sections, and print a short summary.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy::Policy;
use crate::server::{Content, Overrides, ServeOptions, load_settings};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The policy file to validate.
    file: PathBuf,
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = match Policy::from_file(&args.file) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // The server sections are checked as `lenscap serve` would read them; a file without
    // anything to serve is still a valid policy for the Tower layer.
    let options = ServeOptions {
        config: Some(args.file.clone()),
        overrides: Overrides {
            fallback_root: Some(PathBuf::from(".")),
            ..Overrides::default()
        },
    };
    let settings = match load_settings(&options) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{}: ok", args.file.display());
    print!("{}", policy.summary());
    let only_fallback = matches!(
        settings.sites.as_slice(),
        [site] if matches!(&site.content, Content::Static(root) if root.as_os_str() == ".")
    );
    if only_fallback {
        println!(
            "sites: none (for lenscap serve, add server.root, server.upstream or [[site]], or pass --static/--upstream)"
        );
    } else {
        println!("sites: {}", settings.sites.len());
        for site in &settings.sites {
            let hosts = if site.hosts.is_empty() {
                "any host".to_owned()
            } else {
                site.hosts.join(", ")
            };
            println!(
                "  {:<12} {hosts}: {} ({})",
                site.name,
                site.content,
                site.policy.mode().as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
