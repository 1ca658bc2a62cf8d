//! `lenscap check-config` on the shipped policies and on broken ones.

use std::process::Command;

fn check(path: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(["check-config", path])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifest(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_default_policy_checks_and_is_summarised() {
    let (ok, out, err) = check(&manifest("config/lenscap.toml"));
    assert!(ok, "{err}");
    assert!(out.contains("mode: enforce"), "{out}");
    let agents = std::fs::read_to_string(manifest("config/crawlers.toml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim() == "[[agent]]")
        .count();
    assert!(agents > 250, "{agents} agents in config/crawlers.toml");
    assert!(
        out.contains(&format!("catalog: {agents} agents\n")),
        "{out}"
    );
    assert!(out.contains("ai-training       block    / block"), "{out}");
    assert!(out.contains("sites: none"), "{out}");
}

#[test]
fn the_platform_example_lists_its_sites() {
    let (ok, out, err) = check(&manifest("config/examples/platform.toml"));
    assert!(ok, "{err}");
    assert!(out.contains("sites: 2"), "{out}");
    assert!(
        out.contains("redlion.example: upstream http://127.0.0.1:3001/ (report-only)"),
        "{out}"
    );
}

#[test]
fn mistakes_name_the_key_and_line() {
    let dir = std::env::temp_dir().join(format!("lenscap-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "mode = \"enforce\"\n[limits]\nimages = { rate = \"lots\", burst = 3 }\n",
    )
    .unwrap();
    let (ok, _, err) = check(file.to_str().unwrap());
    assert!(!ok);
    assert!(err.contains("line 3"), "{err}");
    std::fs::write(
        &file,
        "[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\nupstream = \"ftp://x\"\n",
    )
    .unwrap();
    let (ok, _, err) = check(file.to_str().unwrap());
    assert!(!ok);
    assert!(
        err.contains("line 4") && err.contains("site.upstream"),
        "{err}"
    );
    let (ok, _, err) = check(dir.join("missing.toml").to_str().unwrap());
    assert!(!ok);
    assert!(err.contains("missing.toml"), "{err}");
}
