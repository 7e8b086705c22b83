//! Reading a [`LabelSelector`] from a manifest's `matchLabels` and `matchExpressions`, with
//! every problem at its line: the policy reader's constructor.

use crate::names;
use crate::selector::{KeyRule, LabelSelector, Operator, Requirement};
use crate::yaml::{self, Diagnostics, Field, Object};

impl LabelSelector {
    /// Reads a selector at `f`, recording every problem; `None` when there was one.
    pub fn from_yaml(
        d: &mut Diagnostics<'_>,
        f: Field<'_, '_>,
        rule: KeyRule,
    ) -> Option<LabelSelector> {
        let before = d.count();
        let mut object = Object::new(d, f.node, f.path)?;
        let mut selector = LabelSelector::default();
        if let Some(node) = object.take("matchLabels") {
            let path = object.child("matchLabels");
            for (key, key_at, value, value_path) in yaml::string_map(d, Field { node, path: &path })
            {
                if let Err(problem) = rule.check(&key) {
                    d.push(key_at, &value_path, problem);
                }
                if let Err(error) = names::label_value(&value) {
                    let at = node.get(&key).map_or(key_at, |n| n.at);
                    d.push(at, &value_path, error);
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
                if let Some(requirement) = read_requirement(
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
}

fn read_requirement(
    d: &mut Diagnostics<'_>,
    f: Field<'_, '_>,
    rule: KeyRule,
) -> Option<Requirement> {
    let before = d.count();
    let mut object = Object::new(d, f.node, f.path)?;
    let key = yaml::required_string(d, &mut object, "key");
    let operator = yaml::required_string(d, &mut object, "operator");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Labels;
    use crate::yaml::{parse_chunk, split_documents};

    fn read_text(text: &str, rule: KeyRule) -> Result<LabelSelector, Vec<String>> {
        let chunks = split_documents(text);
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("s.yaml");
        let node = tree.get("sel").expect("sel");
        LabelSelector::from_yaml(&mut d, Field { node, path: "sel" }, rule)
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
        let selector = read_text(
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
        let selector = read_text("sel: {}\n", KeyRule::Kubernetes).expect("valid");
        assert!(selector.is_empty());
        assert!(selector.matches(&Labels::new()));
    }

    #[test]
    fn operators_and_their_values_are_checked() {
        let errors = read_text(
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
        let errors = read_text(
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
        assert!(read_text("sel:\n  matchLabels: {\"k8s:app\": web}\n", KeyRule::Cilium).is_ok());
        let errors = read_text("sel:\n  matchLabels: {\"k8:app\": web}\n", KeyRule::Cilium)
            .expect_err("unknown source");
        assert!(
            errors[0].contains("\"k8\" is not a Cilium label source"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_number_as_label_value_is_refused() {
        let errors = read_text("sel:\n  matchLabels: {version: 2}\n", KeyRule::Kubernetes)
            .expect_err("number");
        assert!(errors[0].contains("write it quoted"), "{errors:?}");
    }
}
