//! The table of measured results each real-client test prints (run with `--nocapture`).

use std::fmt::Write;

/// One scenario's result.
pub struct Row {
    pub scenario: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    pub server_said: String,
    /// The scenario's folder (its access log): kept when the target was missed.
    pub folder: std::path::PathBuf,
}

/// Prints `rows` under `title`, one line each, aligned.
pub fn print(title: &str, rows: &[Row]) {
    let width = |pick: fn(&Row) -> &str, header: &str| {
        rows.iter()
            .map(|r| pick(r).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let w0 = width(|r| &r.scenario, "scenario");
    let w1 = width(|r| &r.target, "target");
    let w2 = width(|r| &r.measured, "measured");
    let mut out = format!("\n== {title} ==\n");
    let _ = writeln!(
        out,
        "{:w0$}  {:w1$}  {:w2$}  met  server logged (non-allow decisions)",
        "scenario", "target", "measured"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {:3}  {}",
            row.scenario,
            row.target,
            row.measured,
            if row.met { "yes" } else { "NO" },
            row.server_said
        );
    }
    eprintln!("{out}");
}

/// Fails the test listing every row that missed its target (after the table was printed);
/// the folders of the rows that met theirs are removed.
pub fn assert_all_met(title: &str, rows: &[Row]) {
    for row in rows.iter().filter(|r| r.met) {
        let _ = std::fs::remove_dir_all(&row.folder);
    }
    let missed: Vec<String> = rows
        .iter()
        .filter(|r| !r.met)
        .map(|r| {
            format!(
                "{}: target {}, measured {}; server logged {}; access log in {:?}",
                r.scenario,
                r.target,
                r.measured,
                r.server_said,
                r.folder.join("access.jsonl")
            )
        })
        .collect();
    assert!(
        missed.is_empty(),
        "{title}: targets missed:\n{}",
        missed.join("\n")
    );
}
