//! Tests of key definitions, parsing, validation and aliases.

use super::*;
use crate::testing::props;

fn def() -> ConfigDef {
    ConfigDef::new()
        .define(
            ConfigKey::new("topic", ConfigType::String, "Topic.").validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new("tasks.max", ConfigType::Int, "Tasks.")
                .default_value("1")
                .validator(Validator::at_least(1.0)),
        )
        .define(
            ConfigKey::new("mode", ConfigType::String, "Mode.")
                .default_value("fast")
                .validator(Validator::OneOf(&["fast", "slow"])),
        )
        .define(ConfigKey::new("fields", ConfigType::List, "Fields.").default_value(""))
}

#[test]
fn parse_reports_every_error_at_once() {
    let errors = def()
        .parse(&props(&[("tasks.max", "zero"), ("mode", "medium")]))
        .unwrap_err();
    let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["topic", "tasks.max", "mode"]);
    let text = errors.to_string();
    assert!(text.contains("3 error(s)"), "{text}");
    assert!(text.contains("must be one of fast, slow"), "{text}");
}

#[test]
fn parse_applies_defaults_and_types() {
    let parsed = def()
        .parse(&props(&[("topic", "t"), ("fields", "a, b,,c")]))
        .unwrap();
    assert_eq!(parsed.int("tasks.max"), 1);
    assert_eq!(parsed.string("mode"), "fast");
    assert_eq!(parsed.list("fields"), ["a", "b", "c"]);
}

#[test]
fn a_key_is_read_under_its_alias_and_two_different_values_are_an_error() {
    let def = def().define(
        ConfigKey::new("aws.lambda.region", ConfigType::String, "Region.")
            .default_value("")
            .alias("aws.region"),
    );
    let parsed = def
        .parse(&props(&[("topic", "t"), ("aws.region", "eu-west-1")]))
        .unwrap();
    assert_eq!(parsed.string("aws.lambda.region"), "eu-west-1");
    let same = [
        ("topic", "t"),
        ("aws.region", "x"),
        ("aws.lambda.region", "x"),
    ];
    assert_eq!(
        def.parse(&props(&same))
            .unwrap()
            .string("aws.lambda.region"),
        "x"
    );
    let errors = def
        .parse(&props(&[
            ("topic", "t"),
            ("aws.region", "x"),
            ("aws.lambda.region", "y"),
        ]))
        .unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].key, "aws.lambda.region");
    assert!(errors.0[0].message.contains("aws.region"), "{errors}");
    let described = def.describe();
    let doc = &described.last().unwrap().documentation;
    assert!(doc.ends_with("Also read as: aws.region."), "{doc}");
}

#[test]
fn range_validator_rejects_out_of_range() {
    let errors = def()
        .parse(&props(&[("topic", "t"), ("tasks.max", "0")]))
        .unwrap_err();
    assert_eq!(
        errors.0[0].message,
        "Invalid value 0 for configuration tasks.max: Value must be at least 1"
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "config key \"tasks.maxx\" is read but not defined")]
fn reading_a_key_that_is_not_defined_is_a_bug_caught_in_debug_builds() {
    let parsed = def().parse(&props(&[("topic", "t")])).expect("valid");
    parsed.int("tasks.maxx");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "defined as String but read as one of [Int]")]
fn reading_a_key_as_another_type_is_a_bug_caught_in_debug_builds() {
    let parsed = def().parse(&props(&[("topic", "t")])).expect("valid");
    parsed.int("mode");
}

#[test]
fn a_password_never_shows_in_debug_or_display() {
    let secret = Password::new("hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "[hidden] [hidden]");
    assert_eq!(secret.expose(), "hunter2");
}
