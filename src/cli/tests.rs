//! Parsing the command line: each command family's arguments.

use super::*;

/// Parses `pocketbrain <args>` with no settings from the environment.
fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    let cmd = settings_layout(Cli::command().mut_args(|a| a.env(None::<&'static str>)));
    let argv = std::iter::once("pocketbrain").chain(args.iter().copied());
    Cli::parse_with(cmd, argv).map(|cli| cli.command)
}

#[test]
fn tasks_add_takes_exactly_one_schedule() {
    let c = parse(&[
        "tasks",
        "add",
        "491511111111@s.whatsapp.net",
        "--prompt",
        "hi",
        "--cron",
        "0 9 * * 1-5",
    ])
    .unwrap();
    match c {
        Command::Tasks {
            command:
                TasksCommand::Add {
                    cron,
                    interval,
                    once,
                    isolated,
                    ..
                },
        } => {
            assert_eq!(cron.as_deref(), Some("0 9 * * 1-5"));
            assert_eq!((interval, once, isolated), (None, None, false));
        }
        other => panic!("{other:?}"),
    }
    let e = parse(&[
        "tasks",
        "add",
        "x@g.us",
        "--prompt",
        "p",
        "--cron",
        "* * * * *",
        "--once",
        "2026-01-01T00:00",
    ])
    .unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    // A negative-looking interval is a value, not a flag.
    assert!(
        parse(&[
            "tasks",
            "add",
            "x@g.us",
            "--prompt",
            "p",
            "--interval",
            "-5m"
        ])
        .is_ok()
    );
}

#[test]
fn tasks_runs_defaults_to_ten() {
    match parse(&["tasks", "runs", "t1"]).unwrap() {
        Command::Tasks {
            command: TasksCommand::Runs { id, limit },
        } => assert_eq!((id.as_str(), limit), ("t1", 10)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chats_register_defaults_and_flags() {
    match parse(&["chats", "register", "x@g.us", "--name", "Family"]).unwrap() {
        Command::Chats {
            command:
                ChatsCommand::Register {
                    name,
                    main,
                    trigger,
                    folder,
                    profile,
                    ..
                },
        } => {
            assert_eq!(name, "Family");
            assert!(!main);
            assert_eq!(trigger, "mention");
            assert_eq!((folder, profile), (None, None));
        }
        other => panic!("{other:?}"),
    }
    let e = parse(&["chats", "register", "x@g.us"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let e = parse(&["chats", "allow", "x@g.us"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn memory_targets_the_global_file_by_default() {
    match parse(&["memory", "show"]).unwrap() {
        Command::Memory {
            command: MemoryCommand::Show { target },
        } => assert_eq!(target, "global"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn backup_restore_and_flags_of_the_bridge_commands() {
    match parse(&["backup", "b.tar", "--verify"]).unwrap() {
        Command::Backup { file, verify } => {
            assert_eq!(file, PathBuf::from("b.tar"));
            assert!(verify);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["restore", "b.tar"]).unwrap(),
        Command::Restore { force: false, .. }
    ));
    assert!(matches!(
        parse(&["status", "--json"]).unwrap(),
        Command::Status { json: true }
    ));
    assert!(matches!(
        parse(&["whatsapp", "logout", "--force"]).unwrap(),
        Command::Whatsapp {
            command: WhatsappCommand::Logout { force: true }
        }
    ));
    assert!(matches!(
        parse(&["api-keys", "create", "laptop", "--conversation", "notes"]).unwrap(),
        Command::ApiKeys {
            command: ApiKeysCommand::Create { .. }
        }
    ));
    assert!(matches!(
        parse(&["pair", "approve", "ABC123"]).unwrap(),
        Command::Pair {
            command: PairCommand::Approve { .. }
        }
    ));
    let e = parse(&["frobnicate"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand);
}
