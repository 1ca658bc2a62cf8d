//! `lenscap explain`: the verdict and reasons for one request.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use http::{HeaderName, HeaderValue, Request};

use crate::client::{PeerAddr, Tls};
use crate::signals::transport::Transport;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Policy file (default: the embedded policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The User-Agent header.
    #[arg(long)]
    ua: Option<String>,
    /// Another request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The peer address.
    #[arg(long, default_value = "192.0.2.1")]
    ip: IpAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// `http` or `https`.
    #[arg(long, default_value = "http")]
    scheme: String,
    /// The host asked for (what a Web Bot Auth signature's `@authority` covers).
    #[arg(long, default_value = "explain.invalid")]
    host: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// The connection's JA4 fingerprint (as the access log writes it; implies https).
    #[arg(long)]
    ja4: Option<String>,
    /// The ClientHello's traits, comma-separated (`grease,alps,compress-certificate`, …).
    #[arg(long)]
    tls_traits: Option<String>,
    /// The connection's HTTP/2 fingerprint, `SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-headers`.
    #[arg(long)]
    h2: Option<String>,
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(args.config.as_ref())?;
    if args.scheme != "http" && args.scheme != "https" {
        bail!("--scheme must be http or https, not {:?}", args.scheme);
    }
    let uri = format!("{}://{}{}", args.scheme, args.host, args.path);
    let mut builder = Request::builder()
        .method(args.method.as_str())
        .uri(uri.as_str());
    if let Some(ua) = &args.ua {
        let value = HeaderValue::from_str(ua).context("--ua is not a valid header value")?;
        builder = builder.header(http::header::USER_AGENT, value);
    }
    for line in &args.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("-H {line:?}: expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("-H {line:?}: bad header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("-H {line:?}: bad header value"))?;
        builder = builder.header(name, value);
    }
    let mut request = builder.body(()).with_context(|| {
        format!(
            "bad request (method {:?}, path {:?})",
            args.method, args.path
        )
    })?;
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(args.ip, 0)));
    let transport = Transport::from_text(
        args.ja4.as_deref(),
        args.tls_traits.as_deref(),
        args.h2.as_deref(),
    )
    .map_err(anyhow::Error::msg)
    .context("--ja4 / --tls-traits / --h2")?;
    if let Some(transport) = transport {
        // Fingerprints exist only where Lenscap terminated TLS.
        request.extensions_mut().insert(Tls);
        request.extensions_mut().insert(transport);
    }
    let datacenter = policy.datacenter_provider(args.ip);

    let (client, verdict) = policy.verdict_for(&request);
    let signature = policy.signature_of(&request).map(|s| signature_words(&s));
    if args.json {
        let mut value = verdict.to_json();
        value["client"] = client.to_string().into();
        value["mode"] = policy.mode().as_str().into();
        value["datacenter"] = datacenter.into();
        if let Some(tls) = transport.and_then(|t| t.tls) {
            value["ja4"] = tls.ja4().into();
            value["tls_stack"] = tls.stack().as_str().into();
        }
        if let Some(h2) = transport.and_then(|t| t.h2) {
            value["h2"] = h2.akamai().into();
            value["h2_stack"] = h2.stack().as_str().into();
        }
        if let Some(words) = &signature {
            value["signature"] = words.as_str().into();
        }
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "action:   {}{}",
        verdict.action,
        if policy.mode() == crate::policy::Mode::ReportOnly {
            " (report-only: not enforced)"
        } else {
            ""
        }
    );
    println!("category: {}", verdict.category);
    match verdict
        .agent
        .as_deref()
        .and_then(|name| policy.catalog().get(name))
    {
        Some(agent) => {
            println!("agent:    {} ({})", agent.name(), agent.operator());
            if !agent.description().is_empty() {
                println!("          {}", agent.description());
            }
            println!(
                "          obeys robots.txt: {}",
                if agent.obeys_robots() { "yes" } else { "no" }
            );
        }
        None => println!("agent:    none in the catalog"),
    }
    println!("client:   {client}");
    if let Some(provider) = datacenter {
        println!("network:  {provider} (a published cloud or hosting range)");
    }
    if let Some(tls) = transport.and_then(|t| t.tls) {
        println!("ja4:      {} ({} stack)", tls.ja4(), tls.stack().as_str());
    }
    if let Some(h2) = transport.and_then(|t| t.h2) {
        println!("http/2:   {} ({} stack)", h2.akamai(), h2.stack().as_str());
    }
    if let Some(words) = &signature {
        println!("signature: {words}");
    }
    println!("score:    {}", verdict.score);
    println!("reasons:");
    if verdict.reasons.is_empty() {
        println!("  (none)");
    }
    for reason in verdict.reasons.iter() {
        println!("  {:<24} +{}", reason.name(), policy.weight(reason));
    }
    Ok(ExitCode::SUCCESS)
}

/// The Web Bot Auth verdict in a line. `explain` holds only pinned keys (it fetches no
/// directory), and does not check replay.
fn signature_words(
    signature: &Result<
        crate::signals::web_bot_auth::Signed,
        crate::signals::web_bot_auth::SignatureError,
    >,
) -> String {
    match signature {
        Ok(signed) => format!(
            "valid, vouched for by {} (covers {})",
            signed.origin,
            signed.covered.join(", ")
        ),
        Err(error) => format!("refused ({}): {error}", error.reason().name()),
    }
}
