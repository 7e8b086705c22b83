//! `metadata:` of a policy object, and the kinds of object this crate reads.
//!
//! Shared by both policy kinds, so that the name, namespace and label rules, and the fields of an
//! exported manifest that are accepted but change nothing, are decided once.

use flowscope_meta::names;

use crate::selector::Labels;
use crate::yaml::{self, Diagnostics, Field, Object};

/// The namespace of a namespaced object whose manifest names none. `kubectl apply` puts such
/// an object in the namespace it is run against (`-n`, or the context's, usually `default`),
/// and Flux in its Kustomization's `targetNamespace` or `default`; flowscope has no such
/// context, so it uses `default` (see [`crate::parse_file_in`] to choose another).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The parts of `metadata:` a policy keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) name: String,
    /// `None` for cluster-scoped objects.
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Labels,
}

/// Fields the API server sets, which `kubectl get -o yaml` exports and which do not change what
/// a policy does: accepted so that an exported manifest loads, and otherwise ignored.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
];

/// Reads `metadata` of `top`. `namespaced` says whether the kind lives in a namespace;
/// `default_namespace` is used when a namespaced manifest names none.
pub(crate) fn parse(
    d: &mut Diagnostics<'_>,
    top: &mut Object<'_>,
    namespaced: bool,
    default_namespace: &str,
) -> Option<Meta> {
    let before = d.count();
    let path = top.child("metadata");
    let Some(node) = top.take("metadata") else {
        d.push(
            top.at,
            &path,
            "required, but missing: the policy needs a name",
        );
        return None;
    };
    let mut object = Object::new(d, node, &path)?;
    let name = yaml::required_string(d, &mut object, "name");
    if let Some((name, at)) = &name
        && let Err(problem) = names::dns_subdomain(name)
    {
        d.push(*at, &object.child("name"), problem);
    }
    let namespace_path = object.child("namespace");
    let namespace = match object.take("namespace") {
        Some(node) => {
            let namespace = yaml::string(
                d,
                Field {
                    node,
                    path: &namespace_path,
                },
            );
            if let Some(namespace) = &namespace {
                if !namespaced {
                    d.push(
                        node.at,
                        &namespace_path,
                        "this kind is cluster-wide and has no namespace; leave it out",
                    );
                } else if let Err(problem) = names::dns_label(namespace) {
                    d.push(node.at, &namespace_path, problem);
                }
            }
            namespace
        }
        None => namespaced.then(|| default_namespace.to_owned()),
    };
    let labels = match object.take("labels") {
        Some(node) => {
            let path = object.child("labels");
            let mut labels = Labels::new();
            for (key, key_at, value, value_path) in yaml::string_map(d, Field { node, path: &path })
            {
                if let Err(problem) = names::label_key(&key) {
                    d.push(key_at, &value_path, problem);
                }
                if let Err(problem) = names::label_value(&value) {
                    d.push(key_at, &value_path, problem);
                }
                labels.insert(key, value);
            }
            labels
        }
        None => Labels::new(),
    };
    if let Some(node) = object.take("annotations") {
        let path = object.child("annotations");
        for (key, key_at, _, value_path) in yaml::string_map(d, Field { node, path: &path }) {
            if let Err(problem) = names::label_key(&key) {
                d.push(key_at, &value_path, problem);
            }
        }
    }
    object.unsupported(
        d,
        "generateName",
        "a policy needs a fixed `name`; `generateName` would give it a new one on every apply",
    );
    for key in SERVER_SET_METADATA {
        object.ignore(key);
    }
    object.finish(d);
    let (name, _) = name?;
    (d.count() == before).then_some(Meta {
        name,
        namespace,
        labels,
    })
}
