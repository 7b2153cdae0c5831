//! Guards `config/aws-iam-policy.json`: every SDK operation this provider calls must be allowed by
//! the policy, so a new call cannot ship without its permission written down.

use std::collections::BTreeSet;
use std::path::Path;

/// The SDK clients' field names and the IAM service prefix of each.
const CLIENTS: [(&str, &str); 6] = [
    ("ec2", "ec2"),
    ("autoscaling", "autoscaling"),
    ("ssm", "ssm"),
    ("sqs", "sqs"),
    ("servicequotas", "servicequotas"),
    ("quotas", "servicequotas"),
];

/// Every AWS operation name starts with a verb; `sqs.clone()` or `quotas.iter()` on a field of
/// the same name is not an operation.
const VERBS: [&str; 14] = [
    "Describe",
    "Create",
    "Delete",
    "Run",
    "Terminate",
    "Modify",
    "Cancel",
    "Request",
    "Update",
    "Get",
    "List",
    "Receive",
    "Send",
    "Change",
];

/// `describe_instances` → `DescribeInstances`, the IAM action of an SDK operation.
fn action_name(operation: &str) -> String {
    operation
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `<client>.<operation>()` in `source` (whitespace between the parts allowed), as
/// `prefix:Action`.
fn calls_in(source: &str) -> BTreeSet<String> {
    let text: String = source.split_whitespace().collect();
    let mut found = BTreeSet::new();
    for (client, prefix) in CLIENTS {
        let needle = format!("{client}.");
        for (at, _) in text.match_indices(&needle) {
            if text[..at].ends_with(is_ident) {
                continue;
            }
            let rest = &text[at + needle.len()..];
            let op: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            let action = action_name(&op);
            let is_operation = VERBS.iter().any(|v| action.starts_with(v));
            if is_operation && rest[op.len()..].starts_with("()") {
                found.insert(format!("{prefix}:{action}"));
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn policy_actions() -> BTreeSet<String> {
    let policy: serde_json::Value =
        serde_json::from_str(include_str!("../../../config/aws-iam-policy.json")).unwrap();
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let sid = statement["Sid"].as_str().unwrap();
        assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
        for action in statement["Action"].as_array().unwrap() {
            actions.insert(action.as_str().unwrap().to_string());
        }
    }
    actions
}

#[test]
fn operation_names_become_iam_actions() {
    assert_eq!(action_name("describe_instances"), "DescribeInstances");
    assert_eq!(
        calls_in(
            "self.clients\n  .ec2\n  .run_instances()\n ec2.describe_images().x(); my_ec2.foo()"
        ),
        BTreeSet::from(["ec2:RunInstances".into(), "ec2:DescribeImages".into()])
    );
    // Fields named like a client are not calls; the quota client is Service Quotas.
    assert_eq!(
        calls_in(
            "self.quotas.as_ref()?; clients.sqs.clone(); clients.quotas.list_service_quotas()"
        ),
        BTreeSet::from(["servicequotas:ListServiceQuotas".into()])
    );
}

#[test]
fn the_iam_policy_allows_every_sdk_call() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers/aws");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    let called: BTreeSet<String> = files.iter().flat_map(|s| calls_in(s)).collect();
    // A scan that finds next to nothing is a broken scan, not a small provider.
    assert!(called.len() >= 25, "{called:?}");
    let allowed = policy_actions();
    let missing: Vec<&String> = called.difference(&allowed).collect();
    assert!(missing.is_empty(), "not in the IAM policy: {missing:?}");
}
