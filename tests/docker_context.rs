//! The Docker image's build stage must hold everything the crate compiles
//! in. No Docker needed: this reads the crate (manifest, `src/`, every
//! `include_str!`/`include_bytes!`/`include!` and `#[path]` in `src/`, the
//! targets `Cargo.toml` declares), the Dockerfile's build-stage `COPY` lines
//! and `.dockerignore`, and fails for any compiled-in file that is left out
//! of the build context or not copied to its place beside `Cargo.toml`.
//!
//! The build context is the repository root (`build: .` in docker-compose.yml).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` with `.` and `..` taken out, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                assert!(out.pop(), "{} leaves the crate", path.display());
            }
            other => out.push(other),
        }
    }
    out
}

/// A path relative to the crate root, with `/` separators.
fn rel(path: &Path) -> String {
    normalize(path).to_str().unwrap().replace('\\', "/")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The string literal that opens `s` (after blanks), if there is one.
fn string_literal(s: &str) -> Option<String> {
    let s = s.trim_start();
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// Files a Rust source names at compile time, relative to the crate root:
/// `include_str!`, `include_bytes!` and `include!` arguments, and `#[path]`
/// attributes, each resolved against the source's folder.
fn compile_time_references(source_rel: &Path, text: &str) -> Vec<String> {
    let dir = source_rel.parent().unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for mac in ["include_str!(", "include_bytes!(", "include!("] {
            let mut rest = code;
            while let Some(i) = rest.find(mac) {
                // `include!(` also matches the end of the other two.
                let before = rest[..i].chars().next_back();
                rest = &rest[i + mac.len()..];
                if mac == "include!(" && before.is_some_and(|c| c == '_' || c.is_alphanumeric()) {
                    continue;
                }
                let Some(arg) = string_literal(rest) else {
                    panic!(
                        "{}:{}: {mac}...) without a plain string literal; teach tests/docker_context.rs to resolve it",
                        source_rel.display(),
                        n + 1
                    );
                };
                out.push(rel(&dir.join(arg)));
            }
        }
        if let Some(attr) = code.strip_prefix("#[path") {
            let arg = attr.trim_start().strip_prefix('=').and_then(string_literal);
            let Some(arg) = arg else {
                panic!("{}:{}: unreadable #[path]", source_rel.display(), n + 1);
            };
            out.push(rel(&dir.join(arg)));
        }
    }
    out
}

/// Target files `Cargo.toml` declares, which cargo needs to find even when
/// it builds only the binary: `[[bench]]`, `[[test]]`, `[[example]]`,
/// `[[bin]]` (by `path`, or by `name` in their default folder), `[lib]` and
/// `build` scripts.
fn declared_targets(manifest: &str) -> Vec<String> {
    /// The file of the target a finished section declared.
    fn target(section: &str, name: Option<String>, path: Option<String>) -> Option<String> {
        let folder = match section {
            "[[bench]]" => "benches",
            "[[test]]" => "tests",
            "[[example]]" => "examples",
            "[[bin]]" => "src/bin",
            "[lib]" => return path.map(|p| rel(Path::new(&p))),
            _ => return None,
        };
        if let Some(p) = path {
            return Some(rel(Path::new(&p)));
        }
        let n = name?;
        let dir = format!("{folder}/{n}/main.rs");
        Some(if root().join(&dir).is_file() {
            dir
        } else {
            format!("{folder}/{n}.rs")
        })
    }
    let mut out = Vec::new();
    let mut section = String::new();
    let (mut name, mut path) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            out.extend(target(&section, name.take(), path.take()));
            section = line.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = string_literal(value);
        match (key.trim(), section.as_str()) {
            ("name", _) => name = value,
            ("path", _) => path = value,
            ("build", "[package]") => out.extend(value.map(|v| rel(Path::new(&v)))),
            _ => {}
        }
    }
    out.extend(target(&section, name, path));
    if root().join("build.rs").is_file() {
        out.push("build.rs".into());
    }
    out
}

/// Every file the crate's release build reads, relative to the crate root.
fn compiled_in() -> BTreeSet<String> {
    let mut files = BTreeSet::from(["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]);
    let mut sources = Vec::new();
    walk(&root().join("src"), &mut sources);
    for path in sources {
        let source_rel = path.strip_prefix(root()).unwrap().to_path_buf();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            files.extend(compile_time_references(&source_rel, &text));
        }
        files.insert(rel(&source_rel));
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    files.extend(declared_targets(&manifest));
    files
}

/// Glob match as Docker does it: `*` and `?` within one path segment, `**`
/// across any number of segments.
fn glob(pattern: &str, path: &str) -> bool {
    fn segs(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| segs(rest, &s[i..])),
            Some((first, rest)) => s.split_first().is_some_and(|(head, tail)| {
                segment(first.as_bytes(), head.as_bytes()) && segs(rest, tail)
            }),
        }
    }
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| segment(rest, &s[i..])),
            Some((b'?', rest)) => !s.is_empty() && segment(rest, &s[1..]),
            Some((b'[', _)) => panic!(
                "character classes are not supported here: {}",
                String::from_utf8_lossy(p)
            ),
            Some((c, rest)) => s.first() == Some(c) && segment(rest, &s[1..]),
        }
    }
    let clean = |s: &str| -> String { rel(Path::new(s.trim_start_matches('/'))) };
    let (pattern, path) = (clean(pattern), clean(path));
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let s: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs(&p, &s)
}

/// `path` itself, then each folder above it, innermost first.
fn self_and_ancestors(path: &str) -> Vec<&str> {
    let mut out = vec![path];
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        out.push(p);
    }
    out
}

/// Whether `.dockerignore` keeps `path` out of the build context: the last
/// rule matching the path or a folder above it decides; `!` lets it back in.
fn ignored(dockerignore: &str, path: &str) -> bool {
    let mut out = false;
    for line in dockerignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keep, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, line),
        };
        if self_and_ancestors(path)
            .into_iter()
            .any(|p| glob(pattern, p))
        {
            out = !keep;
        }
    }
    out
}

/// One `COPY` from the build context.
#[derive(Debug)]
struct Copy {
    sources: Vec<String>,
    /// Absolute destination in the image, cleaned.
    dest: String,
    /// The destination is a folder (it ended in `/`, or there are several sources).
    into_folder: bool,
}

/// The build stage (the one that runs `cargo build`): its context `COPY`s
/// and the folder `cargo build` runs in.
fn build_stage(dockerfile: &str) -> (Vec<Copy>, String) {
    // Join continued lines, drop comments.
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if current.is_empty() && line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut copies = Vec::new();
    let mut workdir = "/".to_owned();
    for instruction in instructions {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let args: Vec<&str> = words.collect();
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => {
                copies.clear();
                workdir = "/".into();
            }
            "WORKDIR" => {
                let dir = args.join(" ");
                workdir = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", workdir.trim_end_matches('/'))
                };
            }
            "COPY" | "ADD" => {
                let mut args: Vec<String> = if args.first().is_some_and(|a| a.starts_with('[')) {
                    serde_json::from_str(&args.join(" ")).expect("COPY in JSON form")
                } else {
                    args.iter().map(|s| s.to_string()).collect()
                };
                let flags: Vec<String> = args
                    .iter()
                    .take_while(|a| a.starts_with("--"))
                    .cloned()
                    .collect();
                if flags.iter().any(|f| f.starts_with("--from")) {
                    continue;
                }
                assert!(
                    !flags
                        .iter()
                        .any(|f| f.starts_with("--parents") || f.starts_with("--exclude")),
                    "teach tests/docker_context.rs about {flags:?}"
                );
                args.drain(..flags.len());
                let dest = args.pop().expect("COPY destination");
                let dest = if dest.starts_with('/') {
                    dest
                } else {
                    format!("{}/{dest}", workdir.trim_end_matches('/'))
                };
                let into_folder = dest.ends_with('/') || args.len() > 1;
                assert!(
                    args.len() == 1 || dest.ends_with('/'),
                    "COPY with several sources needs a destination ending in /: {instruction}"
                );
                let dest = format!("/{}", rel(Path::new(&dest)));
                copies.push(Copy {
                    sources: args,
                    dest,
                    into_folder,
                });
            }
            "RUN" if args.contains(&"cargo") && args.contains(&"build") => {
                return (copies, workdir);
            }
            _ => {}
        }
    }
    panic!("no stage of the Dockerfile runs `cargo build`");
}

/// Where `copy` puts the context file `file` in the image, if it copies it.
fn placed(copy: &Copy, file: &str) -> Option<String> {
    let dest = copy.dest.trim_end_matches('/');
    for source in &copy.sources {
        let source = rel(Path::new(source));
        if source.is_empty() {
            // `COPY . dest`: the whole context.
            return Some(format!("{dest}/{file}"));
        }
        for candidate in self_and_ancestors(file) {
            if !glob(&source, candidate) {
                continue;
            }
            return Some(if candidate == file {
                if copy.into_folder {
                    format!("{dest}/{}", file.rsplit('/').next().unwrap())
                } else {
                    dest.to_owned()
                }
            } else {
                // A folder: its content goes into the destination.
                format!("{dest}/{}", &file[candidate.len() + 1..])
            });
        }
    }
    None
}

/// What is wrong for each compiled-in file, given the two files' text.
fn problems(files: &BTreeSet<String>, dockerfile: &str, dockerignore: &str) -> Vec<String> {
    let (copies, workdir) = build_stage(dockerfile);
    let crate_root = format!("/{}", rel(Path::new(&workdir)));
    let crate_root = crate_root.trim_end_matches('/');
    let mut out = Vec::new();
    for file in files {
        if ignored(dockerignore, file) {
            out.push(format!(
                "{file}: excluded from the build context by .dockerignore"
            ));
            continue;
        }
        let want = format!("{crate_root}/{file}");
        let got: Vec<String> = copies.iter().filter_map(|c| placed(c, file)).collect();
        if !got.contains(&want) {
            out.push(format!(
                "{file}: the build stage does not copy it to {want} (copied to: {got:?})"
            ));
        }
    }
    out
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_default()
}

#[test]
fn the_image_build_context_holds_everything_the_crate_compiles_in() {
    let files = compiled_in();
    let found = problems(&files, &read("Dockerfile"), &read(".dockerignore"));
    assert!(
        found.is_empty(),
        "the Docker build would miss files the crate compiles in:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_crate_compiles_in_the_plugin_package_and_its_migrations() {
    let files = compiled_in();
    for want in [
        "opencode-plugin/bundle/pocketbrain.js",
        "opencode-plugin/runtime/package-lock.json",
        "src/store/migrations/0001_chats_messages.sql",
        "benches/core.rs",
        "src/main.rs",
    ] {
        assert!(files.contains(want), "{want} not found among {files:#?}");
    }
    assert!(
        !files
            .iter()
            .any(|f| f.contains("node_modules") || f.starts_with("tests/")),
        "nothing the build does not read: {files:#?}"
    );
}

#[test]
fn a_dockerfile_copying_only_the_rust_sources_is_caught() {
    // The Dockerfile before the plugin moved into the build context.
    let old = "FROM rust:1.95-bookworm AS build\nWORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\n\
               COPY src ./src\nCOPY benches ./benches\nRUN cargo build --release --locked --bin pocketbrain\n\
               FROM debian:bookworm-slim\nCOPY --from=build /src/target/release/pocketbrain /usr/local/bin/\n";
    let found = problems(&compiled_in(), old, "target\n");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("opencode-plugin/bundle/pocketbrain.js:")),
        "{found:#?}"
    );
    // (It did not copy the build script or the shipped skills either,
    // which came later.)
    assert!(
        found.iter().all(|p| p.starts_with("opencode-plugin/")
            || p.starts_with("build.rs:")
            || p.starts_with("skills/")),
        "{found:#?}"
    );
}

#[test]
fn copies_into_the_wrong_place_or_ignored_files_are_caught() {
    let files = BTreeSet::from(["Cargo.toml".to_owned(), "assets/a.txt".to_owned()]);
    let base = "FROM x AS build\nWORKDIR /src\nCOPY Cargo.toml ./\n";
    let run = "RUN cargo build\n";
    let ok = |extra: &str, ignore: &str| problems(&files, &format!("{base}{extra}{run}"), ignore);
    assert!(ok("COPY assets ./assets\n", "").is_empty());
    assert!(ok("COPY assets/a.txt ./assets/\n", "").is_empty());
    assert!(ok("COPY [\"assets\", \"/src/assets\"]\n", "").is_empty());
    assert!(ok("COPY . .\n", "target\n").is_empty());
    assert!(
        ok("COPY a* ./\n", "").len() == 1,
        "a glob-matched folder's content lands in ./"
    );
    assert_eq!(ok("COPY assets ./\n", "").len(), 1, "wrong place");
    assert_eq!(ok("COPY assets ./assets\n", "assets\n").len(), 1);
    assert_eq!(ok("COPY assets ./assets\n", "**/*.txt\n").len(), 1);
    assert!(ok("COPY assets ./assets\n", "assets\n!assets/a.txt\n").is_empty());
    assert_eq!(
        ok("COPY assets ./assets\nFROM y\n", "").len(),
        2,
        "only the stage that builds counts"
    );
}

#[test]
fn globs_match_as_docker_does() {
    assert!(glob("**/node_modules", "node_modules"));
    assert!(glob("**/node_modules", "opencode-plugin/node_modules"));
    assert!(!glob("node_modules", "opencode-plugin/node_modules"));
    assert!(glob("Cargo.*", "Cargo.lock"));
    assert!(!glob("*.ts", "plugin/a.ts"));
    assert!(glob("/target", "target"));
    assert!(ignored("target\n", "target/release/x"));
    assert!(!ignored("target\n", "src/target.rs"));
}

#[test]
fn includes_are_resolved_against_their_file() {
    let refs = compile_time_references(
        Path::new("src/ipc/mod.rs"),
        "const A: &str = include_str!(\"../../x/a.ts\");\n// include_str!(y)\nlet b = include_bytes!( \"b.bin\");\n#[path = \"other.rs\"]\n",
    );
    assert_eq!(refs, ["x/a.ts", "src/ipc/b.bin", "src/ipc/other.rs"]);
}

/// The runtime stage's own `COPY`s from the context (the entrypoint
/// script): each source exists and is not excluded by `.dockerignore`, and
/// the image's entrypoint is one of them.
#[test]
fn the_runtime_stage_finds_what_it_copies_from_the_context() {
    let dockerfile = read("Dockerfile");
    let dockerignore = read(".dockerignore");
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").expect("a runtime stage")..];
    let mut copied = Vec::new();
    for line in runtime.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("COPY") {
            continue;
        }
        let args: Vec<&str> = words.filter(|w| !w.starts_with("--chown")).collect();
        if args.first().is_some_and(|a| a.starts_with("--from")) {
            continue;
        }
        let (dest, sources) = args.split_last().expect("COPY source and destination");
        for source in sources {
            assert!(
                root().join(source).exists(),
                "the runtime stage copies {source}, which is not in the repository"
            );
            assert!(
                !ignored(&dockerignore, &rel(Path::new(source))),
                "{source} is excluded from the build context by .dockerignore"
            );
            copied.push((source.to_string(), dest.to_string()));
        }
    }
    let entrypoint = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in JSON form");
    assert!(
        copied
            .iter()
            .any(|(_, dest)| dest.rsplit('/').next() == Some(entry[0].as_str())),
        "the entrypoint {} is not copied into the image: {copied:?}",
        entry[0]
    );
}
