use super::*;

fn sel(s: &str) -> LabelSelector {
    LabelSelector::parse(s, KeyRule::Hubble).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

const POD: &[&str] = &[
    "k8s:app=frontend",
    "k8s:tier=web",
    "k8s:io.kubernetes.pod.namespace=shop",
    "k8s:app.kubernetes.io/name=checkout",
    "container:version=3",
];

fn matches(s: &str, labels: &[&str]) -> bool {
    sel(s).matches_cilium_labels(labels)
}

#[test]
fn equality_and_sources() {
    assert!(matches("app=frontend", POD));
    assert!(matches("app==frontend", POD));
    assert!(matches("k8s:app=frontend", POD));
    assert!(matches("any:app=frontend", POD));
    assert!(!matches("container:app=frontend", POD));
    assert!(!matches("app=backend", POD));
    assert!(matches("app.kubernetes.io/name=checkout", POD));
    assert!(matches("k8s:io.kubernetes.pod.namespace=shop", POD));
}

#[test]
fn inequality_and_sets() {
    assert!(matches("app!=backend", POD));
    assert!(!matches("app!=frontend", POD));
    assert!(
        matches("missing!=x", POD),
        "!= holds when the key is absent"
    );
    assert!(matches("tier in (api, web)", POD));
    assert!(!matches("tier in (api,db)", POD));
    assert!(matches("tier notin (api,db)", POD));
    assert!(!matches("tier notin (web)", POD));
    assert!(matches("missing notin (x)", POD));
    assert!(!matches("missing in (x)", POD));
}

#[test]
fn existence_and_and() {
    assert!(matches("app", POD));
    assert!(!matches("!app", POD));
    assert!(matches("!canary", POD));
    assert!(!matches("canary", POD));
    assert!(matches("app=frontend, tier=web, !canary", POD));
    assert!(!matches("app=frontend,tier=api", POD));
    assert!(matches("", POD), "the empty selector matches everything");
    assert!(matches("!app", &[]));
}

#[test]
fn numeric_comparisons() {
    assert!(matches("version>2", POD));
    assert!(!matches("version>3", POD));
    assert!(matches("container:version<4", POD));
    assert!(!matches("k8s:version<4", POD));
    let selector = sel("replicas>2");
    assert!(selector.matches(&labels(&[("replicas", "3")])));
    assert!(!selector.matches(&labels(&[("replicas", "x")])));
    assert!(!selector.matches(&Labels::new()));
}

#[test]
fn reserved_and_value_less_labels() {
    let world: &[&str] = &["reserved:world"];
    assert!(matches("reserved:world", world));
    assert!(matches("world", world));
    assert!(!matches("k8s:world", world));
    assert!(!matches("reserved:host", world));
    assert!(matches("reserved:host", &["$host"]));
    assert!(matches("reserved:host", &["reserved:=host"]));
    assert!(
        matches("x=", &["k8s:x"]),
        "an empty value matches a value-less label"
    );
    assert!(matches("x in ()", &["k8s:x="]));
}

#[test]
fn cidr_labels_match_broader_selectors() {
    let labels: &[&str] = &["cidr:10.1.2.0/24", "cidr:2001-db8--/48"];
    assert!(matches("cidr:10.0.0.0/8", labels));
    assert!(matches("cidr:10.1.2.0/24", labels));
    assert!(!matches("cidr:10.1.2.0/25", labels));
    assert!(!matches("cidr:192.168.0.0/16", labels));
    assert!(!matches("k8s:10.0.0.0/8", labels));
}

#[test]
fn syntax_errors() {
    let cases = [
        ("app in (a", "',' or ')'"),
        ("app in a", "'('"),
        ("app=a,", "a label key"),
        (",app", "a label key"),
        ("app=a b", "',' or the end"),
        ("!app=a", "after a '!key'"),
        ("app ~ a", "one of =, ==, !=, in, notin, >, <"),
        ("app = (a)", "a value"),
    ];
    for (input, expected) in cases {
        let err = LabelSelector::parse(input, KeyRule::Hubble)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{input:?} gave {err:?}");
    }
    let err = LabelSelector::parse("app in (a", KeyRule::Hubble).unwrap_err();
    assert_eq!(
        err,
        SelectorError::Unexpected {
            expected: "',' or ')'",
            found: "the end of the selector".to_owned(),
            position: 9,
        }
    );
}

#[test]
fn validation_errors() {
    let parse = |s| LabelSelector::parse(s, KeyRule::Hubble);
    assert!(matches!(
        parse("app-=x"),
        Err(SelectorError::InvalidKey { .. })
    ));
    assert!(matches!(
        parse("a/b/c=x"),
        Err(SelectorError::InvalidKey { .. })
    ));
    assert!(matches!(
        parse("app=-x"),
        Err(SelectorError::InvalidValue { .. })
    ));
    assert!(matches!(
        parse("app in (ok, bad!)"),
        Err(SelectorError::Unexpected { .. })
    ));
    assert!(matches!(
        parse("app in (ok, -bad)"),
        Err(SelectorError::InvalidValue { .. })
    ));
    let err = parse("replicas>many").unwrap_err();
    assert!(err.to_string().contains("integer"), "{err}");
    let long = format!("app={}", "v".repeat(64));
    assert!(parse(&long).is_err());
    assert_eq!(
        parse("k8s:app-=x").unwrap_err().to_string(),
        "\"k8s:app-\" is not a valid label key: it must start and end with a letter or digit; \
         an optional DNS subdomain and '/' (e.g. app.kubernetes.io/), then at most 63 letters, \
         digits, '-', '_' or '.', starting and ending with a letter or digit"
    );
}

#[test]
fn key_rules() {
    assert!(KeyRule::Kubernetes.check("app.kubernetes.io/name").is_ok());
    assert!(KeyRule::Kubernetes.check("k8s:app").is_err());
    assert!(KeyRule::Cilium.check("k8s:app").is_ok());
    assert!(KeyRule::Cilium.check("app").is_ok());
    let err = KeyRule::Cilium.check("k8:app").unwrap_err().to_string();
    assert!(
        err.starts_with("\"k8\" is not a Cilium label source; accepted: any, k8s"),
        "{err}"
    );
    assert!(
        KeyRule::Hubble.check("k8:app").is_ok(),
        "Hubble takes any source"
    );
    // Hubble checks `source.key` as one key, so the name part's limit counts the source.
    let long = format!("k8s:{}", "a".repeat(60));
    assert!(KeyRule::Cilium.check(&long).is_ok());
    assert!(KeyRule::Hubble.check(&long).is_err());
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.to_owned(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn match_labels_and_expressions_are_anded() {
    let selector = LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: vec![
            requirement("tier", Operator::NotIn, &["db"]),
            requirement("env", Operator::Exists, &[]),
        ],
    };
    assert!(selector.matches(&labels(&[("app", "web"), ("env", "x")])));
    assert!(selector.matches(&labels(&[("app", "web"), ("env", ""), ("tier", "fe")])));
    assert!(!selector.matches(&labels(&[("app", "web"), ("env", "x"), ("tier", "db")])));
    assert!(!selector.matches(&labels(&[("app", "web")])));
    assert!(!selector.matches(&labels(&[("app", "api"), ("env", "x")])));
    assert!(LabelSelector::default().matches(&Labels::new()));
    assert!(LabelSelector::default().is_empty());
}

#[test]
fn both_constructors_give_the_same_selector() {
    let parsed = LabelSelector::parse("app in (web), !canary", KeyRule::Kubernetes).unwrap();
    let written = LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![
            requirement("app", Operator::In, &["web"]),
            requirement("canary", Operator::DoesNotExist, &[]),
        ],
    };
    assert_eq!(parsed, written);
}
