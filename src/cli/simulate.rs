//! `lenscap simulate`: realistic humans and crawlers against a site, and what got through.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::settings::parse_duration;
use crate::simulate::{BUILTIN_SCENARIOS, ProfileKind, Scenario, Target};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The site to load, `http://host[:port]/`. Loopback only, unless --allow-remote.
    /// Repeated: one site served by several instances, loaded in turn (round-robin), all
    /// named by the first target's host.
    #[arg(long, required = true)]
    target: Vec<String>,
    /// A scenario file, or a builtin name: default, pub-gallery, flood.
    #[arg(long, default_value = "default")]
    scenario: String,
    /// Run only these profiles (repeatable); the scenario's settings for them are kept.
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Stop after this long (overrides the scenario), e.g. 30s, 2m.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Stop after this many requests (overrides the scenario).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Requests in flight at once across every session (overrides the scenario).
    #[arg(long)]
    concurrency: Option<usize>,
    /// A file of URLs (one a line, `#` comments) to use instead of crawling the site.
    #[arg(long)]
    urls: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address. Load-test only sites you run.
    #[arg(long)]
    allow_remote: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a duration like 30s, 500ms, 2m"))
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Cheap parsing first: scenario, profiles, URL list.
    let mut scenario = load_scenario(&args.scenario)?;
    if !args.profiles.is_empty() {
        let kinds = args
            .profiles
            .iter()
            .map(|name| name.parse::<ProfileKind>())
            .collect::<Result<Vec<_>, _>>()
            .context("--profile")?;
        scenario.restrict_to(&kinds);
    }
    if let Some(d) = args.duration {
        scenario.duration = d;
    }
    if let Some(n) = args.max_requests {
        if n == 0 {
            bail!("--max-requests must be at least 1");
        }
        scenario.max_requests = n;
    }
    if let Some(n) = args.concurrency {
        if n == 0 {
            bail!("--concurrency must be at least 1");
        }
        scenario.concurrency = n;
    }
    if scenario.profiles.is_empty() {
        bail!("{}: no profile to run", scenario.name);
    }
    let urls = match &args.urls {
        Some(path) => Some(read_url_list(path)?),
        None => None,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let mut targets = Vec::with_capacity(args.target.len());
        for url in &args.target {
            targets.push(Target::resolve(url, args.allow_remote).await?);
        }
        let (first, others) = targets.split_first().context("--target is required")?;
        let target = first.clone().spread_over(others);
        anyhow::Ok(crate::simulate::run(&target, &scenario, urls).await)
    })?;

    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    for unchecked in report.unchecked(&scenario) {
        eprintln!("lenscap simulate: threshold not checked: {unchecked}");
    }
    let violations = report.violations(&scenario);
    for violation in &violations {
        eprintln!("lenscap simulate: threshold broken: {violation}");
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A path if one exists by that name, else a builtin scenario.
fn load_scenario(name: &str) -> anyhow::Result<Scenario> {
    let path = Path::new(name);
    if path.exists() {
        return Ok(Scenario::from_file(path)?);
    }
    match Scenario::builtin(name) {
        Some(scenario) => Ok(scenario?),
        None => bail!(
            "--scenario {name:?}: no such file, and not a builtin scenario ({})",
            BUILTIN_SCENARIOS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn read_url_list(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--urls {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
