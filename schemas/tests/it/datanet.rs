use tributary_schemas::datanet::DatanetManifest;

const OK: &str = r#"
name = "n"
domain = "d"
licenses = ["MIT"]
[fields.text]
type = "text"
required = true
"#;

fn err(toml: &str) -> String {
    DatanetManifest::from_toml(toml).unwrap_err().to_string()
}

#[test]
fn the_schema_hash_ignores_layout_and_follows_the_rules() {
    let a = DatanetManifest::from_toml(OK).unwrap();
    let b = DatanetManifest::from_toml(&format!(
        "# comment\n{}",
        OK.replace("required = true", "required=true")
    ))
    .unwrap();
    assert_eq!(a.schema_hash(), b.schema_hash());
    let c = DatanetManifest::from_toml(&OK.replace("[\"MIT\"]", "[\"MIT\", \"CC0-1.0\"]")).unwrap();
    assert_ne!(a.schema_hash(), c.schema_hash());
    assert!(a.dedup.exact, "exact dedup is on by default");
    assert!(a.access.submitters.allows(alloy::primitives::Address::ZERO));
}

#[test]
fn bad_manifests_say_what_to_change() {
    assert!(
        err(&OK.replace("licenses = [\"MIT\"]", "licenses = []")).contains("at least one SPDX")
    );
    assert!(
        err(&OK.replace("type = \"text\"", "type = \"label\""))
            .contains("give its allowed `labels`")
    );
    assert!(err(&OK.replace("type = \"text\"", "type = \"blob\"")).contains("blob"));
    assert!(err(&format!("{OK}pattern = \"(\"\n")).contains("not a valid regex"));
    assert!(
        err(&format!("{OK}min_length = 5\nmax_length = 2\n"))
            .contains("min_length 5 exceeds max_length 2")
    );
    assert!(err(&format!("{OK}[dedup]\nnear_threshold = 1.5\n")).contains("(0, 1]"));
    assert!(
        err(&format!("{OK}colour = 1\n")).contains("colour"),
        "unknown keys are refused"
    );
    assert!(err("name = \"x\"").contains("missing field"));
}
