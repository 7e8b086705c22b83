//! Label selectors (`matchLabels` and `matchExpressions`) read from a policy, with positions.
//!
//! Every part of a policy that picks pods or namespaces does it with one of these, in both
//! Kubernetes' and Cilium's policies. The type, the key and value rules and the matching are
//! Kubernetes' concepts that Hubble's label filters share, so they live in
//! [`flowscope_meta::selector`]; what is left here is reading one from a policy's YAML tree,
//! recording every problem at its line. Cilium's keys may carry a source (`k8s:app`,
//! `reserved:host`); the key is kept as written and [`verdict`](mod@crate::verdict) decides
//! what each source can match.

pub use flowscope_meta::selector::{KeyRule, LabelSelector, Labels, Operator, Requirement};

/// The label sources Cilium knows; a key with another source is refused.
pub use flowscope_meta::cilium::SOURCES as CILIUM_SOURCES;
use flowscope_meta::names;

use crate::yaml::{self, Diagnostics, Field, Object};

/// Reads a selector at `f`, recording every problem; `None` when there was one.
pub(crate) fn parse(
    d: &mut Diagnostics<'_>,
    f: Field<'_, '_>,
    rule: KeyRule,
) -> Option<LabelSelector> {
    let before = d.count();
    let mut object = Object::new(d, f.node, f.path)?;
    let mut selector = LabelSelector::default();
    if let Some(node) = object.take("matchLabels") {
        let path = object.child("matchLabels");
        for (key, key_at, value, value_path) in yaml::string_map(d, Field { node, path: &path }) {
            if let Err(problem) = rule.check(&key) {
                d.push(key_at, &value_path, problem);
            }
            if let Err(problem) = names::label_value(&value) {
                let at = node.get(&key).map_or(key_at, |n| n.at);
                d.push(at, &value_path, problem);
            }
            selector.match_labels.insert(key, value);
        }
    }
    if let Some(node) = object.take("matchExpressions") {
        let path = object.child("matchExpressions");
        for (i, item) in yaml::list(d, Field { node, path: &path })
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("{path}[{i}]");
            if let Some(requirement) = parse_requirement(
                d,
                Field {
                    node: item,
                    path: &path,
                },
                rule,
            ) {
                selector.match_expressions.push(requirement);
            }
        }
    }
    object.finish(d);
    (d.count() == before).then_some(selector)
}

fn parse_requirement(
    d: &mut Diagnostics<'_>,
    f: Field<'_, '_>,
    rule: KeyRule,
) -> Option<Requirement> {
    let before = d.count();
    let mut object = Object::new(d, f.node, f.path)?;
    let key = required_string(d, &mut object, "key");
    let operator = required_string(d, &mut object, "operator");
    let values_node = object.take("values");
    object.finish(d);

    let key = key?;
    if let Err(problem) = rule.check(&key.0) {
        d.push(key.1, &format!("{}.key", f.path), problem);
    }
    let (operator, operator_at) = operator?;
    let operator_path = format!("{}.operator", f.path);
    let operator = match operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            d.push(
                operator_at,
                &operator_path,
                format!(
                    "{:?} is not In, NotIn, Exists or DoesNotExist",
                    yaml::sanitize(other)
                ),
            );
            return None;
        }
    };
    let values_path = format!("{}.values", f.path);
    let values: Vec<(String, yaml::Pos)> = match values_node {
        Some(node) => yaml::string_list(
            d,
            Field {
                node,
                path: &values_path,
            },
        ),
        None => Vec::new(),
    };
    for (i, (value, at)) in values.iter().enumerate() {
        if let Err(problem) = names::label_value(value) {
            d.push(*at, &format!("{values_path}[{i}]"), problem);
        }
    }
    let at = values_node.map_or(f.node.at, |n| n.at);
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => d.push(
            at,
            &values_path,
            format!("{operator} needs at least one value"),
        ),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => d.push(
            at,
            &values_path,
            format!("{operator} takes no values; leave `values` out"),
        ),
        _ => {}
    }
    (d.count() == before).then(|| Requirement {
        key: key.0,
        operator,
        values: values.into_iter().map(|(v, _)| v).collect(),
    })
}

/// A string that must be present: recorded as missing, pointing at the object, when absent.
pub(crate) fn required_string(
    d: &mut Diagnostics<'_>,
    object: &mut Object<'_>,
    key: &'static str,
) -> Option<(String, yaml::Pos)> {
    let path = object.child(key);
    match object.take(key) {
        Some(node) => yaml::string(d, Field { node, path: &path }).map(|s| (s, node.at)),
        None => {
            d.push(object.at, &path, "required, but missing");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_chunk, split_documents};

    fn read(text: &str, rule: KeyRule) -> Result<LabelSelector, Vec<String>> {
        let chunks = split_documents(text);
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("s.yaml");
        let node = tree.get("sel").expect("sel");
        parse(&mut d, Field { node, path: "sel" }, rule)
            .ok_or_else(|| d.errors.iter().map(ToString::to_string).collect())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let selector = read(
            "sel:\n  matchLabels: {app: web}\n  matchExpressions:\n    - {key: tier, operator: NotIn, values: [db]}\n    - {key: env, operator: Exists}\n",
            KeyRule::Kubernetes,
        )
        .expect("valid");
        assert!(selector.matches(&labels(&[("app", "web"), ("env", "x")])));
        assert!(selector.matches(&labels(&[("app", "web"), ("env", ""), ("tier", "fe")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("env", "x"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "api"), ("env", "x")])));
    }

    #[test]
    fn empty_selector_selects_everything() {
        let selector = read("sel: {}\n", KeyRule::Kubernetes).expect("valid");
        assert!(selector.is_empty());
        assert!(selector.matches(&Labels::new()));
    }

    #[test]
    fn operators_and_their_values_are_checked() {
        let errors = read(
            "sel:\n  matchExpressions:\n    - {key: a, operator: In}\n    - {key: b, operator: Exists, values: [x]}\n    - {key: c, operator: in, values: [x]}\n",
            KeyRule::Kubernetes,
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "s.yaml:3:7: sel.matchExpressions[0].values: In needs at least one value"
        );
        assert!(errors[1].contains("Exists takes no values"), "{errors:?}");
        assert!(
            errors[2].contains("\"in\" is not In, NotIn, Exists or DoesNotExist"),
            "{errors:?}"
        );
    }

    #[test]
    fn label_keys_and_values_are_checked() {
        let errors = read(
            "sel:\n  matchLabels:\n    app: \"a b\"\n    \"k8s:app\": web\n",
            KeyRule::Kubernetes,
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "s.yaml:3:10: sel.matchLabels[\"app\"]: \"a b\" is not a valid label value"
            ),
            "{errors:?}"
        );
        assert!(read("sel:\n  matchLabels: {\"k8s:app\": web}\n", KeyRule::Cilium).is_ok());
        let errors = read("sel:\n  matchLabels: {\"k8:app\": web}\n", KeyRule::Cilium)
            .expect_err("unknown source");
        assert!(
            errors[0].contains("\"k8\" is not a Cilium label source"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_number_as_label_value_is_refused() {
        let errors =
            read("sel:\n  matchLabels: {version: 2}\n", KeyRule::Kubernetes).expect_err("number");
        assert!(errors[0].contains("write it quoted"), "{errors:?}");
    }
}
