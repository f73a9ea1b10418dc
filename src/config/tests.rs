use std::sync::{Mutex, PoisonError};

use chrono_tz::Tz;
use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

/// The environment is process-wide: tests that set it take turns.
static ENV: Mutex<()> = Mutex::new(());

/// Parses `pocketbrain <args>` as `main` does, with `env` as the only
/// settings in the environment (the caller's own are ignored), then
/// validates. An error reads as the user would see it.
fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<Config, String> {
    let cmd = {
        let _turn = ENV.lock().unwrap_or_else(PoisonError::into_inner);
        let before: Vec<_> = env.iter().map(|(k, _)| std::env::var_os(k)).collect();
        for (k, v) in env {
            // SAFETY: the variables are set and restored under ENV, and
            // only these tests read them. Other threads of the test
            // binary read the environment through std, which locks it.
            unsafe { std::env::set_var(k, v) };
        }
        // clap reads each variable here, when the argument is built.
        let old = old_names(|k| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.into())
        });
        let cmd = accept_old_names(Cli::command(), &old).mut_args(|a| {
            let given = a
                .get_env()
                .is_some_and(|name| env.iter().any(|(k, _)| name == *k));
            if given {
                a
            } else {
                a.env(None::<&'static str>)
            }
        });
        let cmd = crate::cli::settings_layout(unset_blank_env(cmd));
        for ((k, _), old) in env.iter().zip(before) {
            // SAFETY: as above.
            unsafe {
                match old {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
        cmd
    };
    let argv = std::iter::once("pocketbrain").chain(args.iter().copied());
    let cli = Cli::parse_with(cmd, argv).map_err(|e| e.to_string())?;
    cli.config.validate().map_err(|e| e.to_string())?;
    Ok(cli.config)
}

fn refused(env: &[(&str, &str)], args: &[&str]) -> String {
    match parse(env, args) {
        Ok(c) => panic!("{env:?} {args:?} was accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn opencode_env_takes_variable_names_but_no_bridge_setting() {
    let c = parse(&[("PB_OPENCODE_ENV", "AWS_REGION, MY_KEY")], &["serve"]).unwrap();
    assert_eq!(c.opencode_env, vec!["AWS_REGION", "MY_KEY"]);
    assert!(refused(&[("PB_OPENCODE_ENV", "PB_DATA_DIR")], &["serve"]).contains("bridge setting"));
    assert!(refused(&[("PB_OPENCODE_ENV", "A-B")], &["serve"]).contains("PB_OPENCODE_ENV"));
}

#[test]
fn media_limits_and_the_transcription_endpoint_are_checked() {
    let c = parse(&[], &["serve"]).unwrap();
    assert_eq!(c.media_max_bytes, crate::media::MediaLimits::default());
    assert!(c.transcribe().is_none());
    let c = parse(
        &[
            ("PB_MEDIA_MAX_BYTES", "image=8M"),
            ("PB_TRANSCRIBE_URL", "http://127.0.0.1:8080/v1"),
            ("PB_TRANSCRIBE_API_KEY", "sk-secret"),
        ],
        &["serve"],
    )
    .unwrap();
    assert_eq!(c.media_max_bytes.image, 8 * 1024 * 1024);
    let t = c.transcribe().unwrap();
    assert_eq!(
        (t.url.as_str(), t.model.as_str()),
        ("http://127.0.0.1:8080/v1", "whisper-1")
    );
    assert!(!format!("{c:?}").contains("sk-secret"));
    let e = refused(&[("PB_MEDIA_MAX_BYTES", "photo=1M")], &["serve"]);
    assert!(
        e.contains("PB_MEDIA_MAX_BYTES") && e.contains("not a media kind"),
        "{e}"
    );
    let e = refused(&[("PB_TRANSCRIBE_URL", "ftp://x")], &["serve"]);
    assert!(e.starts_with("invalid PB_TRANSCRIBE_URL"), "{e}");
}

#[test]
fn defaults_are_valid() {
    let c = parse(&[], &["serve"]).unwrap();
    // One default for every command, the one scripts/run.sh uses.
    assert_eq!(c.data_dir, state_dir("data"));
    assert!(c.data_dir.ends_with("pocketbrain/data"), "{:?}", c.data_dir);
    assert_eq!(c.workspace, state_dir("workspace"));
    let run_sh =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run.sh")).unwrap();
    assert!(
        run_sh.contains(r#"state="${XDG_DATA_HOME:-$HOME/.local/share}/pocketbrain""#)
            && run_sh.contains("$state/data")
            && run_sh.contains("$state/workspace"),
        "scripts/run.sh's defaults differ"
    );
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8787");
    assert_eq!(c.channel, ChannelKind::WhatsApp);
    assert_eq!(c.assistant_name, "Andy");
    assert!(!c.assistant_has_own_number);
    assert_eq!(c.max_concurrent_sessions, 5);
    assert_eq!(c.opencode_url, None);
    assert_eq!(c.opencode_password, None);
    assert_eq!(c.opencode_username, "opencode");
    assert_eq!(c.opencode_model, None);
    assert_eq!(c.opencode_bin, None);
    assert!(c.opencode_env.is_empty());
    assert_eq!(c.tz, Tz::UTC);
    assert_eq!(c.run_timeout, Duration::from_secs(1200));
    assert_eq!(c.approval_timeout, Duration::from_secs(600));
    assert_eq!(c.retry_base, Duration::from_secs(5));
    assert_eq!(c.retry_attempts, 5);
    assert_eq!(c.permission, PermissionPolicy::Allow);
    assert_eq!(c.max_text_bytes, 65_536);
    assert_eq!(c.max_batch, 100);
    assert_eq!(c.ipc_timeout, Duration::from_secs(30));
    assert_eq!(c.whatsapp_phone, None);
    assert_eq!(c.wa_chunk_limit, 4000);
    assert!(c.read_receipts);
    assert_eq!(c.wa_per_chat_per_minute, 12);
    assert_eq!(c.wa_per_minute, 40);
    assert_eq!(c.stream_watchdog, Duration::from_secs(30));
}

#[test]
fn a_bad_variable_is_refused_by_name() {
    let cases = [
        ("PB_RUN_TIMEOUT", "ten minutes", "is not a duration"),
        ("PB_RUN_TIMEOUT", "0s", "must be greater than zero"),
        (
            "PB_RETRY_BASE",
            "5 fortnights",
            "unknown unit \"fortnights\"",
        ),
        ("PB_MAX_CONCURRENT_SESSIONS", "0", "0 is not in 1..=64"),
        ("PB_MAX_BATCH", "lots", "invalid digit"),
        (
            "PB_CHANNEL",
            "telegram",
            "[possible values: whatsapp, fake]",
        ),
        ("PB_PERMISSION", "ask", "[possible values: allow, reject]"),
        ("PB_READ_RECEIPTS", "maybe", "value was not a boolean"),
        ("PB_HTTP_ADDR", "nope", "invalid socket address"),
        ("PB_OPENCODE_MODEL", "gpt", "expected provider/model"),
        ("PB_WHATSAPP_PHONE", "12ab", "digits only"),
        ("PB_ASSISTANT_NAME", "Andy Bot", "one word"),
    ];
    for (var, value, why) in cases {
        let e = refused(&[(var, value)], &["serve"]);
        let flag = format!(
            "--{}",
            var.trim_start_matches("PB_")
                .to_lowercase()
                .replace('_', "-")
        );
        assert!(
            e.contains(&format!("invalid value '{value}' for '{flag} <{var}>'")) && e.contains(why),
            "{var}={value}: {e}"
        );
    }
}

#[test]
fn ranges_hold_at_both_ends() {
    let cases: [(&str, u64, u64); 7] = [
        ("PB_MAX_CONCURRENT_SESSIONS", 1, 64),
        ("PB_RETRY_ATTEMPTS", 1, 20),
        ("PB_MAX_TEXT_BYTES", 1, 1_048_576),
        ("PB_MAX_BATCH", 1, 10_000),
        ("PB_WA_CHUNK_LIMIT", 200, 60_000),
        ("PB_WA_PER_CHAT_PER_MINUTE", 1, 600),
        ("PB_WA_PER_MINUTE", 1, 3000),
    ];
    for (var, min, max) in cases {
        for ok in [min, max] {
            assert!(
                parse(&[(var, &ok.to_string())], &["serve"]).is_ok(),
                "{var}={ok}"
            );
        }
        for bad in [min - 1, max + 1] {
            let e = refused(&[(var, &bad.to_string())], &["serve"]);
            assert!(
                e.contains(&format!("<{var}>'"))
                    && e.contains(&format!("{bad} is not in {min}..={max}")),
                "{var}={bad}: {e}"
            );
        }
    }
}

#[test]
fn a_flag_wins_over_its_variable_before_or_after_the_command() {
    let env = [("PB_MAX_BATCH", "7")];
    assert_eq!(parse(&env, &["serve"]).unwrap().max_batch, 7);
    assert_eq!(
        parse(&env, &["--max-batch", "9", "serve"])
            .unwrap()
            .max_batch,
        9
    );
    assert_eq!(
        parse(&env, &["chats", "list", "--max-batch", "9"])
            .unwrap()
            .max_batch,
        9
    );
    let e = refused(&[], &["status", "--max-batch", "0"]);
    assert!(e.contains("'--max-batch <PB_MAX_BATCH>'"), "{e}");
    let e = refused(&[], &["serve", "--tz", "Mars/Olympus"]);
    assert!(
        e.contains("'--tz <TZ>'") && e.contains("not an IANA time zone"),
        "{e}"
    );
}

#[test]
fn a_blank_variable_counts_as_unset() {
    let env = [
        ("PB_OPENCODE_MODEL", ""),
        ("PB_WHATSAPP_PHONE", ""),
        ("PB_MAX_CONCURRENT_SESSIONS", " "),
        ("PB_READ_RECEIPTS", ""),
    ];
    let c = parse(&env, &["serve"]).unwrap();
    assert_eq!(c.opencode_model, None);
    assert_eq!(c.whatsapp_phone, None);
    assert_eq!(c.max_concurrent_sessions, 5);
    assert!(c.read_receipts);
}

#[test]
fn values_are_parsed_into_their_types() {
    let c = parse(
        &[
            ("PB_OPENCODE_MODEL", "anthropic/claude-sonnet-4-5"),
            ("PB_WHATSAPP_PHONE", "+49 151-1234 5678"),
            ("PB_CHANNEL", "fake"),
            ("PB_PERMISSION", "reject"),
            ("PB_ASSISTANT_HAS_OWN_NUMBER", "yes"),
            ("PB_READ_RECEIPTS", "0"),
            ("PB_RUN_TIMEOUT", "1h30m"),
            ("PB_IPC_TIMEOUT", "2500"),
            ("PB_OPENCODE_URL", "http://127.0.0.1:4096"),
        ],
        // TZ is not set here: other tests' clocks may read it.
        &["--tz", ":Europe/Berlin", "serve"],
    )
    .unwrap();
    assert_eq!(
        c.opencode_model,
        Some(ModelRef {
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into()
        })
    );
    assert_eq!(c.whatsapp_phone.as_deref(), Some("4915112345678"));
    assert_eq!(c.tz, Tz::Europe__Berlin);
    assert_eq!(c.channel, ChannelKind::Fake);
    assert_eq!(c.permission, PermissionPolicy::Reject);
    assert!(c.assistant_has_own_number);
    assert!(!c.read_receipts);
    assert_eq!(c.run_timeout, Duration::from_secs(5400));
    assert_eq!(c.ipc_timeout, Duration::from_millis(2500));
    assert_eq!(c.opencode_url.unwrap().as_str(), "http://127.0.0.1:4096/");
}

#[test]
fn opencode_url_rules_keep_their_messages() {
    assert_eq!(
        refused(&[("PB_OPENCODE_URL", "ftp://x")], &["serve"]),
        "invalid PB_OPENCODE_URL (--opencode-url): use an http:// or https:// URL"
    );
    // Credentials would be logged with the URL; the refusal never shows them.
    let e = refused(
        &[("PB_OPENCODE_URL", "http://opencode:hunter2@127.0.0.1:4096")],
        &["serve"],
    );
    assert!(
        e.starts_with("invalid PB_OPENCODE_URL (--opencode-url): leave the user and password out")
            && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn a_public_address_needs_a_token_and_a_token_must_be_long() {
    let public = [("PB_HTTP_ADDR", "0.0.0.0:8787")];
    let e = parse(&public, &["serve"])
        .unwrap()
        .check_http_bind()
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            "invalid PB_HTTP_ADDR (--http-addr): 0.0.0.0:8787 is not a loopback address"
        ) && e.to_string().contains("set PB_HTTP_TOKEN"),
        "{e}"
    );
    let with = [
        ("PB_HTTP_ADDR", "0.0.0.0:8787"),
        ("PB_HTTP_TOKEN", "0123456789abcdef0123"),
    ];
    let c = parse(&with, &["serve"]).unwrap();
    c.check_http_bind().unwrap();
    assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
    for local in ["127.0.0.1:8787", "[::1]:8787"] {
        parse(&[("PB_HTTP_ADDR", local)], &["serve"])
            .unwrap()
            .check_http_bind()
            .unwrap();
    }
    let e = refused(&[("PB_HTTP_TOKEN", "short")], &["serve"]);
    assert!(
        e.starts_with(
            "invalid PB_HTTP_TOKEN (--http-token): it is 5 characters long, shorter than 16"
        ),
        "{e}"
    );
    assert!(!e.contains("short\""), "{e}");
}

/// Placeholders and short or repetitive values are refused as the
/// bridge's token and as OpenCode's password, the example file's own
/// values first; the value never shows in the message.
#[test]
fn placeholder_and_weak_secrets_are_refused() {
    // Read at run time: the image's build context holds what the crate
    // compiles in, and the example file is not part of it.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let value_of = |name: &str| {
        example
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is not set in .env.example"))
            .to_owned()
    };
    let from_example = [
        value_of("PB_HTTP_TOKEN"),
        value_of("OPENCODE_SERVER_PASSWORD"),
    ];
    let weak = [
        "change-me",
        "changeme",
        "Change_Me_Please_Now_1234",
        "replace-me-with-something-long",
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        "121212121212121212121212",
        "0123456789",
        "your-password-goes-here-xyz",
    ];
    for (setting, flag) in [
        ("PB_HTTP_TOKEN", "--http-token"),
        ("OPENCODE_SERVER_PASSWORD", "--opencode-password"),
    ] {
        for value in from_example.iter().map(String::as_str).chain(weak) {
            let e = refused(&[(setting, value)], &["serve"]);
            assert!(
                e.starts_with(&format!("invalid {setting} ({flag}): ")),
                "{e}"
            );
            assert!(!e.contains(value), "the value shows in {e}");
        }
        let strong = "9f2c4e1ab37d5068e4c1f0a2b9d37e65";
        let c = parse(&[(setting, strong)], &["serve"]).unwrap();
        assert!(c.http_token.is_some() || c.opencode_password.is_some());
    }
    assert_eq!(weak_secret("9f2c4e1ab37d5068"), None);
}

#[test]
fn model_pins_hold_per_profile() {
    use crate::model::Profile;
    let c = parse(
        &[
            ("PB_MODELS_MEMBER", "openai/*,anthropic/claude-haiku"),
            ("PB_MODELS_GUEST", "local/small"),
        ],
        &["serve"],
    )
    .unwrap();
    let pins = ModelPins::from_config(&c);
    assert!(pins.allows(Profile::Main, "anything/at-all"));
    assert!(pins.allows(Profile::Member, "openai/gpt-5"));
    assert!(pins.allows(Profile::Member, "anthropic/claude-haiku"));
    assert!(!pins.allows(Profile::Member, "anthropic/claude-opus"));
    assert!(!pins.allows(Profile::Member, "openaix/gpt-5"));
    assert!(pins.allows(Profile::Guest, "local/small"));
    assert!(!pins.allows(Profile::Guest, "openai/gpt-5"));
    assert!(ModelPins::default().allows(Profile::Guest, "x/y"));
    for bad in ["openai", "*/gpt", "a/b*", "/x"] {
        let e = refused(&[("PB_MODELS_GUEST", bad)], &["serve"]);
        assert!(e.contains("PB_MODELS_GUEST"), "{e}");
    }
}

#[test]
fn host_names_are_checked_and_folded() {
    let c = parse(&[("PB_HTTP_HOSTS", "PocketBrain.LAN, box.")], &["serve"]).unwrap();
    assert_eq!(c.http_hosts, ["pocketbrain.lan", "box"]);
    for bad in ["http://x", "x:8787", "a..b", "-"] {
        let e = refused(&[("PB_HTTP_HOSTS", bad)], &["serve"]);
        assert!(e.contains("PB_HTTP_HOSTS"), "{e}");
    }
}

#[test]
fn log_format_is_human_unless_json_is_asked_for() {
    assert_eq!(parse(&[], &["serve"]).unwrap().log_format, LogFormat::Human);
    assert_eq!(
        parse(&[("PB_LOG_FORMAT", "json")], &["serve"])
            .unwrap()
            .log_format,
        LogFormat::Json
    );
    let e = refused(&[("PB_LOG_FORMAT", "xml")], &["serve"]);
    assert!(e.contains("[possible values: human, json]"), "{e}");
}

#[test]
fn password_never_shows_in_debug() {
    let pw = "hunter2-but-longer-7c1f";
    let c = parse(&[("OPENCODE_SERVER_PASSWORD", pw)], &["serve"]).unwrap();
    assert!(!format!("{c:?}").contains(pw));
    assert_eq!(c.opencode_password.unwrap().expose(), pw);
}

#[test]
fn durations() {
    let ok = [
        ("90s", 90_000),
        ("5m", 300_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("250ms", 250),
        ("1h30m", 5_400_000),
        ("1h 30m", 5_400_000),
        (" 10m ", 600_000),
        ("1500", 1500),
    ];
    for (v, ms) in ok {
        assert_eq!(parse_duration(v), Ok(Duration::from_millis(ms)), "{v}");
    }
    let bad = [
        ("0", "greater than zero"),
        ("0s", "greater than zero"),
        ("", "not a duration"),
        ("-5s", "not a duration"),
        ("5 fortnights", "unknown unit"),
        ("99999999999999999999", "too large"),
        ("99999999999999999999d", "too large"),
    ];
    for (v, why) in bad {
        let e = parse_duration(v).unwrap_err();
        assert!(e.contains(why), "{v}: {e}");
    }
}

#[test]
fn an_old_name_stands_in_for_its_unset_new_one() {
    let c = parse(
        &[
            ("ASSISTANT_NAME", "Robo"),
            ("MAX_CONCURRENT_SESSIONS", "3"),
            ("OPENCODE_URL", "http://127.0.0.1:4096"),
        ],
        &["serve"],
    )
    .unwrap();
    assert_eq!(c.assistant_name, "Robo");
    assert_eq!(c.max_concurrent_sessions, 3);
    assert!(c.opencode_url.is_some());
    // A bad value under the old name is refused naming the new one.
    let e = refused(&[("MAX_CONCURRENT_SESSIONS", "0")], &["serve"]);
    assert!(e.contains("<PB_MAX_CONCURRENT_SESSIONS>"), "{e}");
}

#[test]
fn the_new_name_wins_when_both_are_set() {
    let c = parse(
        &[("ASSISTANT_NAME", "Old"), ("PB_ASSISTANT_NAME", "New")],
        &["serve"],
    )
    .unwrap();
    assert_eq!(c.assistant_name, "New");
}

#[test]
fn old_names_are_found_once_each() {
    let env = [
        ("ASSISTANT_NAME", "Old"),
        ("PB_ASSISTANT_NAME", "New"),
        ("OPENCODE_MODEL", "a/b"),
        ("MAX_CONCURRENT_SESSIONS", " "),
        ("PB_OPENCODE_BIN", "/x"),
    ];
    let found = old_names(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.into())
    });
    assert_eq!(
        found,
        [
            OldName {
                old: "ASSISTANT_NAME",
                new: "PB_ASSISTANT_NAME",
                ignored: true
            },
            OldName {
                old: "OPENCODE_MODEL",
                new: "PB_OPENCODE_MODEL",
                ignored: false
            },
        ]
    );
    // Every new name is a setting's variable, and every setting's is PB_*
    // but the three it shares with other programs.
    let vars: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for (_, new) in RENAMED {
        assert!(vars.iter().any(|v| v == new), "{new}");
    }
    for v in &vars {
        assert!(
            v.starts_with("PB_")
                || ["OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME", "TZ"]
                    .contains(&v.as_str()),
            "{v} is not a PB_* name"
        );
    }
}

/// docs/configuration.md is what the settings' definitions render to.
#[test]
fn the_configuration_reference_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == reference_markdown(),
        "docs/configuration.md is stale: run `cargo run -- config-reference > docs/configuration.md`"
    );
}

/// Every variable the crate reads is in the reference, or named here as
/// not a setting.
#[test]
fn every_variable_the_crate_reads_is_documented() {
    /// Read by the crate but no setting of the bridge: the system's and
    /// OpenCode's own (mirrored for the managed OpenCode), and test knobs.
    const NOT_SETTINGS: [&str; 9] = [
        "HOME",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "PATH",
        "VISUAL",
        "EDITOR",
        "OPENCODE_CONFIG",
        "OPENCODE_CONFIG_CONTENT",
        "PB_FUZZ_CASES",
    ];
    let reference = reference_markdown();
    let mut read = std::collections::BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.ends_with("config/tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for opener in [
                "env = \"",
                "env::var(\"",
                "env::var_os(\"",
                "from_env(\"",
                "var(\"",
            ] {
                for rest in text.split(opener).skip(1) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if rest[name.len()..].starts_with('"') && !name.is_empty() {
                        read.insert(name);
                    }
                }
            }
        }
    }
    for name in [
        "PB_DATA_DIR",
        "PB_LOG",
        "PB_API_KEY",
        "HOME",
        "OPENCODE_CONFIG",
    ] {
        assert!(read.contains(name), "the scan missed {name}: {read:?}");
    }
    for name in read {
        assert!(
            reference.contains(&format!("**`{name}`**")) || NOT_SETTINGS.contains(&name.as_str()),
            "{name} is read but neither in docs/configuration.md nor listed as not a setting"
        );
    }
}

#[test]
fn settings_show_in_serve_help_only() {
    use clap::CommandFactory;
    let mut cmd = crate::cli::settings_layout(Cli::command());
    let serve = cmd.find_subcommand_mut("serve").unwrap().render_long_help();
    assert!(serve.to_string().contains("--run-timeout <PB_RUN_TIMEOUT>"));
    assert!(serve.to_string().contains("WhatsApp:"));
    let top = cmd.render_long_help().to_string();
    assert!(!top.contains("--run-timeout"), "{top}");
    let chats = cmd.find_subcommand_mut("chats").unwrap().render_long_help();
    assert!(!chats.to_string().contains("--run-timeout"), "{chats}");
}

#[test]
fn phone_numbers_are_digits_with_their_country_code() {
    use super::parse_phone;
    for (raw, want) in [
        ("+49 151-1234 5678", "4915112345678"),
        ("4915112345678", "4915112345678"),
        ("  +1 555 0100 ", "15550100"),
        ("1234567", "1234567"),
        ("123456789012345", "123456789012345"),
    ] {
        assert_eq!(parse_phone(raw).as_deref(), Ok(want), "{raw}");
    }
    for (raw, why) in [
        ("", "7 to 15 digits"),
        ("+", "7 to 15 digits"),
        ("123456", "7 to 15 digits"),
        ("1234567890123456", "has 16"),
        ("0151 12345678", "not 0"),
        ("++4915112345678", "'+' is not a digit"),
        ("49 (151) 123", "'(' is not a digit"),
        ("4915112345678+", "'+' is not a digit"),
        ("49151.1234567", "'.' is not a digit"),
        ("4915112345678x", "'x' is not a digit"),
    ] {
        let e = parse_phone(raw).unwrap_err();
        assert!(e.contains(why), "{raw:?}: {e}");
    }
}
