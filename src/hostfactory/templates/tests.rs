use proptest::prelude::*;
use serde_json::json;

use super::*;

const FIXTURE: &str =
    include_str!("../../../tests/fixtures/hostfactory/_config/awsprov_templates.json");

fn one(v: Value) -> Result<Template, Vec<String>> {
    parse(&json!({"templates": [v]}).to_string()).map(|mut t| t.remove(0))
}

fn minimal() -> Value {
    json!({"templateId": "t1", "maxNumber": 2, "vmType": "m5.large",
           "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]}})
}

#[test]
fn the_sample_templates_file_parses_with_attributes_as_written() {
    let templates = parse(FIXTURE).expect("the fixture is valid");
    assert_eq!(templates.len(), 7);
    let c5 = &templates[0];
    assert_eq!(c5.id, "OnDemand-C5Large");
    assert_eq!(
        c5.attributes_json(),
        json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]})
    );
    let r6i = templates
        .iter()
        .find(|t| t.id == "Fleet-Instant-R6i")
        .unwrap();
    assert_eq!(
        r6i.attributes_json(),
        json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "16384"]})
    );
    assert_eq!(
        templates
            .iter()
            .find(|t| t.id == "Unlimited-OnDemand")
            .unwrap()
            .max_number,
        -1
    );
    assert!(
        templates
            .iter()
            .find(|t| t.id == "Disabled-Template")
            .unwrap()
            .is_disabled()
    );
    assert_eq!(
        templates
            .iter()
            .find(|t| t.id == "ASG-T3-Medium")
            .unwrap()
            .provider_api
            .as_deref(),
        Some("ASG")
    );
    assert_eq!(
        templates.last().unwrap().provider_name.as_deref(),
        Some("aws-secondary")
    );
}

#[test]
fn a_bare_array_is_accepted() {
    let t = parse(&json!([minimal()]).to_string()).unwrap();
    assert_eq!(t[0].id, "t1");
}

#[test]
fn problems_name_the_template_and_the_field() {
    let mut bad = minimal();
    bad["maxNumber"] = json!(-5);
    bad["attributes"]["ncpus"] = json!(["Numeric", "many"]);
    bad["instanceTags"] = json!("owner");
    bad["providerApi"] = json!("Lambda");
    let errs = parse(&json!({"templates": [minimal(), bad]}).to_string()).unwrap_err();
    let text = errs.join("\n");
    assert!(
        text.contains("template 't1' (templates[1]): maxNumber: must be an integer from -1"),
        "{text}"
    );
    assert!(
        text.contains("attributes.ncpus: 'many' is not numeric"),
        "{text}"
    );
    assert!(
        text.contains("instanceTags: 'owner' is not key=value"),
        "{text}"
    );
    assert!(text.contains("providerApi: 'Lambda'"), "{text}");
    let dup = parse(&json!({"templates": [minimal(), minimal()]}).to_string()).unwrap_err();
    assert_eq!(
        dup,
        ["template 't1' (templates[1]): templateId: duplicate of an earlier template"]
    );
    let errs = one(json!({"maxNumber": 1})).unwrap_err().join("\n");
    assert!(
        errs.contains("templateId: is required") && errs.contains("attributes: is required"),
        "{errs}"
    );
    let errs = one(json!({"templateId": "s", "maxNumber": 1, "providerApi": "SpotFleet", "vmTypes": {"m5.large": 0},
        "attributes": {"type": "X86_64", "ncpus": 1, "nram": 1024}})).unwrap_err().join("\n");
    assert!(
        errs.contains("fleetRole: is required") && errs.contains("vmTypes.m5.large"),
        "{errs}"
    );
    let errs = one(
        json!({"templateId": "a", "maxNumber": 1, "vmType": "x", "imageId": "ubuntu",
        "maxSpotPrice": "cheap", "keyName": "", "vmTypesPriority": {"m5.large": "high"},
        "attributes": {"type": "X86_64", "ncpus": 1, "nram": 1024}}),
    )
    .unwrap_err()
    .join("\n");
    for field in [
        "imageId",
        "maxSpotPrice",
        "keyName",
        "vmTypesPriority.m5.large",
    ] {
        assert!(errs.contains(&format!("{field}: ")), "{field}: {errs}");
    }
    assert!(parse("{\"templates\": 3}").is_err());
    assert!(parse("{oops").unwrap_err()[0].contains("not valid JSON"));
}

#[test]
fn instance_tags_split_on_semicolon_and_first_equals() {
    assert_eq!(
        parse_instance_tags("owner=gridops; cost=a=b;;").unwrap(),
        vec![
            ("owner".into(), "gridops".into()),
            ("cost".into(), "a=b".into())
        ]
    );
    assert!(parse_instance_tags("=x").is_err());
}

proptest! {
    /// Plain numbers and strings come out in typed form with the value as text, unchanged.
    #[test]
    fn attributes_come_out_typed(ncpus in 1u32..512, nram in 1u64..1_000_000, kind in "[A-Z][A-Z0-9_]{0,10}") {
        let t = one(json!({"templateId": "p", "maxNumber": -1, "vmType": "x",
            "attributes": {"type": kind.clone(), "ncpus": ncpus, "nram": nram.to_string()}})).unwrap();
        prop_assert_eq!(t.attributes_json(), json!({"type": ["String", kind], "ncpus": ["Numeric", ncpus.to_string()],
            "nram": ["Numeric", nram.to_string()]}));
    }

    /// maxNumber: only -1..=10000 integers are accepted.
    #[test]
    fn max_number_range(n in -100i64..20_000) {
        let mut v = minimal();
        v["maxNumber"] = json!(n);
        prop_assert_eq!(one(v).is_ok(), (-1..=10_000).contains(&n));
    }
}

#[test]
fn weighted_templates_count_units() {
    let weighted = json!({"vmTypes": {"m5.xlarge": 2, "m5.2xlarge": 4}});
    assert_eq!(units_of(Some(&weighted), Some("m5.2xlarge")), 4);
    assert_eq!(units_of(Some(&weighted), Some("c5.large")), 1);
    assert_eq!(units_of(Some(&weighted), None), 1);
    assert_eq!(
        units_of(Some(&json!({"vmType": "m5.large"})), Some("m5.large")),
        1
    );
    assert_eq!(units_of(None, Some("m5.large")), 1);
}
