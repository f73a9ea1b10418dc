//! The documents stay true to the repository: every module under `src/` is
//! named in `docs/ARCHITECTURE.md`, the README stays short and opens with
//! the two commands, and no relative link in the README or `docs/` points
//! at a file that is not there. No network, no bridge: it reads files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The README's limit in lines: a newcomer's page, the rest is in `docs/`.
const README_MAX_LINES: usize = 260;

/// Files linked from the documents that another line of work adds. A name
/// here must not exist yet: once it does, this list is out of date.
const NOT_YET_WRITTEN: &[&str] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every module of the crate, as its path under `src/` without `.rs` or
/// `/mod.rs`: `queue` for `src/queue.rs`, `channel/whatsapp/convert` for
/// `src/channel/whatsapp/convert.rs`, `channel` for `src/channel/`. Unit
/// test files (`tests.rs`, `tests/`) are not modules of their own; a folder
/// with no Rust file in it (migrations, fixtures) is not one either.
fn modules() -> BTreeSet<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> bool {
        let mut any_rust = false;
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if path.is_dir() {
                if name == "tests" {
                    continue;
                }
                let mut inner = BTreeSet::new();
                if walk(&path, &full, &mut inner) {
                    any_rust = true;
                    out.insert(full);
                    out.extend(inner);
                }
            } else if let Some(stem) = name.strip_suffix(".rs") {
                any_rust = true;
                match stem {
                    "tests" | "mod" => {}
                    _ if prefix.is_empty() => {
                        out.insert(stem.to_string());
                    }
                    _ => {
                        out.insert(format!("{prefix}/{stem}"));
                    }
                }
            }
        }
        any_rust
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), "", &mut out);
    out
}

#[test]
fn every_module_is_named_in_the_architecture() {
    let doc = read("docs/ARCHITECTURE.md");
    let modules = modules();
    assert!(
        modules.contains("queue") && modules.contains("channel/whatsapp/convert"),
        "the module list is wrong: {modules:?}"
    );
    let missing: Vec<_> = modules
        .iter()
        .filter(|m| !doc.contains(&format!("`{m}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name these modules of src/ (write each as `path/under/src`, \
         in backticks, in its module table): {}",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The contents of the README's first `n` fenced code blocks.
fn first_code_blocks(text: &str, n: usize) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => {
                    blocks.push(block);
                    if blocks.len() == n {
                        break;
                    }
                }
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

#[test]
fn the_readme_is_short_and_opens_with_the_two_commands() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move detail into docs/ and link it"
    );
    let blocks = first_code_blocks(&readme, 2);
    assert_eq!(
        blocks.len(),
        2,
        "README.md must open with two code blocks: the command that runs PocketBrain, then the one that runs every test"
    );
    assert!(
        blocks[0].contains("docker compose up"),
        "README.md's first code block must be the command that runs PocketBrain (`docker compose up`), found:\n{}",
        blocks[0]
    );
    let test_command = blocks[1].trim();
    assert_eq!(
        test_command, "scripts/test.sh",
        "README.md's second code block must be the command that runs every test"
    );
    let start = readme.find("```").unwrap();
    let before = readme[..start].lines().count();
    assert!(
        before <= 12,
        "README.md must open with the commands: its first code block starts after {before} lines"
    );
    let ci = read(".ci/run");
    assert!(
        ci.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains(test_command)),
        ".ci/run does not call the README's test command `{test_command}`"
    );
}

/// The targets of inline Markdown links (`[text](target)`) outside code
/// blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans hold examples, not links.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            match after.find(')') {
                Some(end) => {
                    targets.push(after[..end].trim().to_string());
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    targets
}

#[test]
fn relative_links_in_the_documents_lead_to_files() {
    let mut documents = vec![PathBuf::from("README.md")];
    let mut in_docs: Vec<_> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    in_docs.sort();
    documents.extend(in_docs);

    for pending in NOT_YET_WRITTEN {
        assert!(
            !root().join(pending).exists(),
            "{pending} exists now: remove it from NOT_YET_WRITTEN in tests/docs.rs"
        );
    }

    let mut broken = Vec::new();
    for doc in &documents {
        let text = read(doc.to_str().unwrap());
        let dir = doc.parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let path = normalize(&dir.join(file));
            let rel = path.to_string_lossy().into_owned();
            if NOT_YET_WRITTEN.contains(&rel.as_str()) {
                continue;
            }
            if !root().join(&path).exists() {
                broken.push(format!(
                    "{}: ({target}) leads to {rel}, which does not exist",
                    doc.display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "relative links to missing files:\n{}",
        broken.join("\n")
    );
}

/// `docs/../README.md` as `README.md`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every source file under `dir` (recursively) with extension `ext`.
fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

/// The guarantees in `docs/operations.md` each name the test backing them:
/// every such name (a backticked snake_case identifier of four words or
/// more) is a function of the crate's tests. A renamed or deleted test
/// fails here instead of leaving the guarantee unbacked.
#[test]
fn every_test_a_guarantee_names_exists() {
    let ops = read("docs/operations.md");
    let start = ops
        .find("## What it guarantees")
        .expect("the guarantees section");
    let end = ops[start..]
        .find("\n## ")
        .map_or(ops.len(), |i| start + i + 1);
    let section = &ops[start..end];
    let mut sources = String::new();
    let mut files = Vec::new();
    files_under(&root().join("src"), "rs", &mut files);
    files_under(&root().join("tests"), "rs", &mut files);
    for f in files {
        sources.push_str(&fs::read_to_string(f).unwrap());
    }
    let names: Vec<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.split('_').count() >= 4
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    assert!(names.len() >= 20, "the section names its tests: {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !sources.contains(&format!("fn {n}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md names tests that do not exist: {missing:?}"
    );
}
