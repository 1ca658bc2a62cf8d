//! The house rule of docs/ARCHITECTURE.md, checked: a module only imports modules on its own
//! floor or below, so the request flows one way and no import circle can form between stages.

use std::path::Path;

/// Every top-level module of `src/` and its floor (lower floors are imported by higher ones).
const FLOORS: &[(&str, u8)] = &[
    ("settings", 1),
    ("fingerprint", 1),
    ("request_headers", 1),
    ("stamp", 1),
    ("documents", 1),
    ("client", 2),
    ("catalog", 2),
    ("tag", 2),
    ("verdict", 3),
    ("signals", 4),
    ("metrics", 4),
    ("classify", 5),
    ("record", 5),
    ("decide", 6),
    ("limit", 7),
    ("policy", 8),
    ("layer", 9),
    ("server", 10),
    ("simulate", 10),
    ("cli", 11),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

/// The top-level module a file under `src/` belongs to.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::name` paths in the code of a file, before its unit tests (tests may reach up).
fn crate_imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_imports_only_its_floor_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = module_of(relative);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = floor(&module) else {
            problems.push(format!(
                "{}: module `{module}` has no floor in FLOORS (and in docs/ARCHITECTURE.md)",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for target in crate_imports(&text) {
            match floor(&target) {
                Some(theirs) if theirs > own => problems.push(format!(
                    "{}: `{module}` (floor {own}) imports `crate::{target}` (floor {theirs})",
                    relative.display()
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "{}: imports `crate::{target}`, a crate-root item: name its module instead",
                    relative.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let imports = crate_imports(
        "use crate::policy::Policy;\n// crate::layer in a comment\nfn f() { crate::limit::x(); }\n#[cfg(test)]\nmod tests {\n use crate::server::X;\n}\n",
    );
    assert_eq!(imports, ["policy", "limit"]);
    assert!(floor("limit").unwrap() < floor("policy").unwrap());
}
