use super::*;

#[test]
fn mention_is_case_insensitive_and_word_bounded() {
    let r = TriggerRule::Mention;
    assert!(r.matches("@Andy what's up", "Andy"));
    assert!(r.matches("  @andy, hi", "Andy"));
    assert!(r.matches("@ANDY", "Andy"));
    assert!(!r.matches("@Andyson hi", "Andy"));
    assert!(!r.matches("hey @Andy", "Andy"));
    assert!(!r.matches("Andy hi", "Andy"));
    assert!(r.matches("@Ünal hallo", "ünal"));
}

#[test]
fn prefix_and_always_rules() {
    assert!(TriggerRule::Prefix("!bot".into()).matches("!BOT do it", "Andy"));
    assert!(!TriggerRule::Prefix("!bot".into()).matches("bot", "Andy"));
    assert!(TriggerRule::Always.matches("anything", "Andy"));
}

#[test]
fn rule_strings_round_trip() {
    for s in ["mention", "always", "prefix:!ai"] {
        assert_eq!(TriggerRule::parse(s).unwrap().to_db(), s);
    }
    assert!(TriggerRule::parse("prefix:").is_err());
    assert!(TriggerRule::parse("sometimes").is_err());
}

#[test]
fn state_strings_round_trip_and_pad() {
    for s in ["pending", "sent", "delivered", "read", "failed"] {
        assert_eq!(s.parse::<OutboxState>().unwrap().as_str(), s);
    }
    for s in ["queued", "running", "ok", "error"] {
        assert_eq!(s.parse::<TaskRunStatus>().unwrap().to_string(), s);
    }
    assert_eq!(format!("{:<9}|", TaskStatus::Active), "active   |");
    assert_eq!(
        serde_json::to_value(ContextMode::Isolated).unwrap(),
        "isolated"
    );
    let e = "sleeping".parse::<RunState>().unwrap_err();
    assert_eq!(e.to_string(), "unknown run state \"sleeping\"");
}
