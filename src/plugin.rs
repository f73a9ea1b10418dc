//! The PocketBrain plugin, installed into the workspace's `.opencode/` for
//! OpenCode to load: the bundled tools, a lock that leaves OpenCode nothing
//! to fetch from a package registry, and the plugin's own settings (where
//! the IPC folder is, how long to wait, which variables to keep from tools).

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::safe_dir::{Limited, SafeDir};

/// The plugin as OpenCode loads it: the package in `opencode-plugin/`
/// bundled with its dependencies (`@opencode-ai/plugin`, zod) into one file
/// (`npm run bundle`, checked against the sources by `npm run bundle:check`),
/// embedded so the workspace always has the plugin that matches this bridge
/// and needs nothing from a package registry. Installed as
/// `<workspace>/.opencode/plugin/pocketbrain.js`.
pub const PLUGIN_BUNDLE: &str = include_str!("../opencode-plugin/bundle/pocketbrain.js");

/// Tells OpenCode that `.opencode/` has nothing to install.
///
/// OpenCode 1.18.33 runs an npm install of `@opencode-ai/plugin` (plus the
/// dependencies of a `package.json`) in every config folder it reads,
/// `.opencode/` included, and loads no plugin until that install has ended:
/// with no registry, a fresh workspace's first answer waited ~75 s, and an
/// unbundled plugin then failed to load. The install is skipped when the
/// folder has a `node_modules/` and a `package-lock.json` whose root lists
/// every wanted package. The bundle carries `@opencode-ai/plugin` inside,
/// so this lock names it, and `node_modules/` stays empty. The same file
/// serves OpenCode's own config folder in `docker-compose.yml`.
pub const NOTHING_TO_INSTALL_LOCK: &str =
    include_str!("../opencode-plugin/runtime/package-lock.json");

/// Files earlier versions installed into `.opencode/`: the plugin's
/// TypeScript sources (loaded beside the bundle, they would register the
/// tools twice) and a `package.json` that made OpenCode install from the
/// registry. Removed when found.
const LEGACY_FILES: &[&str] = &[
    "plugin/pocketbrain.ts",
    "package.json",
    "pocketbrain/contract.ts",
    "pocketbrain/env.ts",
    "pocketbrain/ipc.ts",
    "pocketbrain/spec.ts",
    "pocketbrain/tools.ts",
    "pocketbrain/tools/cancel_task.ts",
    "pocketbrain/tools/list_tasks.ts",
    "pocketbrain/tools/pause_task.ts",
    "pocketbrain/tools/resume_task.ts",
    "pocketbrain/tools/schedule_task.ts",
    "pocketbrain/tools/send_file.ts",
    "pocketbrain/tools/send_message.ts",
];

/// Writes the plugin and its config into `<workspace>/.opencode/`,
/// touching only files whose content changed, with the empty
/// `node_modules/` and the lock that spare OpenCode an install (see
/// [`NOTHING_TO_INSTALL_LOCK`]). The agent can write there: every folder is
/// opened without following a symlink (a planted one is replaced by a real
/// folder), and every file is written through a fresh temp file renamed
/// over it, so a symlink planted as a plugin file is replaced, and its
/// target left alone.
///
/// `secret_env` names variables the plugin removes from the environment of
/// the agent's shell commands (besides the server password and names that
/// look like keys, which it always removes).
pub fn install(
    workspace: &Path,
    ipc_root: &Path,
    timeout: Duration,
    secret_env: &[String],
) -> std::io::Result<()> {
    let config = serde_json::json!({
        "ipc_dir": ipc_root,
        "timeout_ms": timeout.as_millis() as u64,
        "secret_env": secret_env,
    })
    .to_string();
    let files = [
        ("plugin/pocketbrain.js", PLUGIN_BUNDLE.to_owned()),
        ("package-lock.json", NOTHING_TO_INSTALL_LOCK.to_owned()),
        ("pocketbrain.json", config),
    ];
    let base = SafeDir::open_root(workspace)?.subdir(".opencode")?;
    for legacy in LEGACY_FILES {
        let mut parts: Vec<&str> = legacy.split('/').collect();
        let name = parts.pop().expect("a file name");
        let dir = parts
            .iter()
            .try_fold(base.try_clone()?, |d, p| d.descend(p));
        if let Ok(dir) = dir
            && let Err(e) = dir.remove(OsStr::new(name))
        {
            tracing::warn!(file = legacy, error = %e, "cannot remove a file an earlier version installed in .opencode/");
        }
    }
    base.subdir("node_modules")?;
    for (rel, content) in files {
        let mut parts: Vec<&str> = rel.split('/').collect();
        let name = parts.pop().expect("a file name");
        let dir = base.subpath(&parts)?;
        let same = matches!(
            dir.read_limited(OsStr::new(name), content.len() as u64),
            Ok(Limited::Whole(b)) if b == content.as_bytes()
        );
        if !same {
            dir.write(name, content.as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn plugin_install_replaces_planted_symlinks_and_leaves_their_targets() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside.txt");
        std::fs::write(&outside, "precious").unwrap();
        let outside_dir = t.path().join("outside-dir");
        std::fs::create_dir_all(&outside_dir).unwrap();
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join(".opencode/plugin")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join(".opencode/plugin/pocketbrain.js")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join(".opencode/pocketbrain.json")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join(".opencode/package-lock.json")).unwrap();
        std::os::unix::fs::symlink(&outside_dir, ws.join(".opencode/node_modules")).unwrap();
        install(&ws, Path::new("/data/ipc"), Duration::from_secs(30), &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert!(std::fs::read_dir(&outside_dir).unwrap().next().is_none());
        let entry = ws.join(".opencode/plugin/pocketbrain.js");
        assert!(!entry.is_symlink());
        assert_eq!(std::fs::read_to_string(entry).unwrap(), PLUGIN_BUNDLE);
        assert!(!ws.join(".opencode/package-lock.json").is_symlink());
        assert!(!ws.join(".opencode/node_modules").is_symlink());
        assert!(ws.join(".opencode/node_modules").is_dir());
    }

    #[test]
    fn plugin_install_writes_once_and_config_points_at_ipc() {
        let dir = tempfile::tempdir().unwrap();
        install(
            dir.path(),
            Path::new("/data/ipc"),
            Duration::from_secs(30),
            &[],
        )
        .unwrap();
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(".opencode/pocketbrain.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cfg,
            json!({"ipc_dir": "/data/ipc", "timeout_ms": 30000, "secret_env": []})
        );
        let plugin = dir.path().join(".opencode/plugin/pocketbrain.js");
        let before = std::fs::metadata(&plugin).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        install(
            dir.path(),
            Path::new("/data/ipc"),
            Duration::from_secs(30),
            &[],
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&plugin).unwrap().modified().unwrap(),
            before,
            "unchanged files are not rewritten"
        );
    }

    /// What OpenCode 1.18.33 checks before it runs an npm install in a config
    /// folder (its `Npm.install`): a `node_modules/` there, and a lock whose
    /// root names every package of `package.json` and `@opencode-ai/plugin`.
    #[test]
    fn the_installed_folder_leaves_opencode_nothing_to_install() {
        let dir = tempfile::tempdir().unwrap();
        install(
            dir.path(),
            Path::new("/data/ipc"),
            Duration::from_secs(30),
            &[],
        )
        .unwrap();
        let base = dir.path().join(".opencode");
        assert!(base.join("node_modules").is_dir());
        assert!(
            !base.join("package.json").exists(),
            "a package.json would ask OpenCode to install its dependencies"
        );
        let lock: Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("package-lock.json")).unwrap())
                .unwrap();
        assert!(lock["packages"][""]["dependencies"]["@opencode-ai/plugin"].is_string());
    }

    #[test]
    fn files_of_earlier_versions_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join(".opencode");
        for legacy in LEGACY_FILES {
            let path = base.join(legacy);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "old").unwrap();
        }
        std::fs::write(base.join("plugin/mine.ts"), "a plugin of the owner's").unwrap();
        install(
            dir.path(),
            Path::new("/data/ipc"),
            Duration::from_secs(30),
            &[],
        )
        .unwrap();
        for legacy in LEGACY_FILES {
            assert!(!base.join(legacy).exists(), "{legacy} is still there");
        }
        assert!(base.join("plugin/mine.ts").is_file());
        assert!(base.join("plugin/pocketbrain.js").is_file());
    }

    /// The bundle is the whole plugin: it imports nothing but Node's
    /// built-ins (which Bun has), and exports the plugin and nothing else
    /// (OpenCode takes every export of a plugin file for a plugin).
    #[test]
    fn the_bundle_imports_only_builtins_and_exports_only_the_plugin() {
        let mut imports = 0;
        for line in PLUGIN_BUNDLE.lines() {
            let line = line.trim_start();
            let spec = if let Some(i) = line.find(" from \"") {
                line[i + 7..].split('"').next()
            } else if let Some(rest) = line.strip_prefix("import \"") {
                rest.split('"').next()
            } else {
                None
            };
            if let Some(spec) = spec
                && (line.starts_with("import ")
                    || line.starts_with("export ")
                    || line.starts_with("} from"))
            {
                imports += 1;
                assert!(spec.starts_with("node:"), "the bundle imports {spec}");
            }
            assert!(
                !line.contains("require(\""),
                "the bundle requires a module: {line}"
            );
        }
        assert!(imports >= 3, "the scan found {imports} imports");
        let exports = PLUGIN_BUNDLE
            .split("\nexport {")
            .nth(1)
            .expect("an export list")
            .split('}')
            .next()
            .unwrap();
        let names: Vec<&str> = exports
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(names, ["PocketBrain"]);
    }
}
