//! From files to a [`PolicySet`]: splitting manifests into documents, picking the policy kinds
//! out of everything else a GitOps directory holds, and keeping every good policy even when its
//! neighbours are broken.
//!
//! A directory such as Flux's `infrastructure/network-policies/` mixes policies with
//! Kustomizations and ConfigMaps, several documents to a file, sometimes a `kind: List`. Each
//! document is judged alone: one that is broken becomes a [`PolicyError`] and the others load,
//! because refusing a whole directory over one typo would leave flowscope showing no policy at
//! all, which is further from the truth than showing all but one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cilium::{self, CiliumNetworkPolicy};
use crate::error::PolicyError;
use crate::meta::DEFAULT_NAMESPACE;
use crate::networkpolicy::{self, NetworkPolicy};
use crate::yaml::{self, Diagnostics, Node, Pos, Value};

/// The file name endings read from a directory; anything else there is not a manifest.
pub const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// A policy of either kind, with where it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The file it came from, as named in errors.
    pub file: String,
    /// The line its document (or `List` item) starts on, 1-based.
    pub line: u64,
    /// The policy itself.
    pub body: PolicyBody,
}

/// The policy of a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PolicyBody {
    /// `networking.k8s.io/v1` NetworkPolicy.
    Kubernetes(NetworkPolicy),
    /// `cilium.io/v2` CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy.
    Cilium(CiliumNetworkPolicy),
}

/// The kinds of policy this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    /// `NetworkPolicy`.
    NetworkPolicy,
    /// `CiliumNetworkPolicy`.
    CiliumNetworkPolicy,
    /// `CiliumClusterwideNetworkPolicy`.
    CiliumClusterwideNetworkPolicy,
}

impl PolicyKind {
    /// The `kind:` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => networkpolicy::KIND,
            PolicyKind::CiliumNetworkPolicy => cilium::KIND,
            PolicyKind::CiliumClusterwideNetworkPolicy => cilium::CLUSTERWIDE_KIND,
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What names a policy in a cluster: its kind, namespace (none for cluster-wide kinds) and
/// name. Two policies with the same identity cannot both exist. Displayed
/// `NetworkPolicy/default/allow-dns-egress`, or `Kind/name` for cluster-wide kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PolicyId {
    /// The kind.
    pub kind: PolicyKind,
    /// `None` for cluster-wide kinds.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{namespace}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

impl Policy {
    /// What the policy asks that flowscope enforces only in part, one sentence each; empty
    /// for everything enforced as written. Every policy this crate loads is enforced as
    /// written today (HTTP rules by the observer's L7 proxy, see [`crate::l7`]), so this is
    /// always empty; it stays so that callers show warnings as soon as some feature needs one.
    pub fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the policy's identity is `id` (as [`Policy::id`], without building one).
    pub fn has_id(&self, id: &PolicyId) -> bool {
        match &self.body {
            PolicyBody::Kubernetes(p) => {
                id.kind == PolicyKind::NetworkPolicy
                    && id.namespace.as_deref() == Some(p.namespace.as_str())
                    && id.name == p.name
            }
            PolicyBody::Cilium(p) => {
                let kind = if p.is_cluster_wide() {
                    PolicyKind::CiliumClusterwideNetworkPolicy
                } else {
                    PolicyKind::CiliumNetworkPolicy
                };
                id.kind == kind && id.namespace == p.namespace && id.name == p.name
            }
        }
    }

    /// The policy's identity.
    pub fn id(&self) -> PolicyId {
        match &self.body {
            PolicyBody::Kubernetes(p) => PolicyId {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some(p.namespace.clone()),
                name: p.name.clone(),
            },
            PolicyBody::Cilium(p) => PolicyId {
                kind: if p.is_cluster_wide() {
                    PolicyKind::CiliumClusterwideNetworkPolicy
                } else {
                    PolicyKind::CiliumNetworkPolicy
                },
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            },
        }
    }
}

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFile {
    /// In document order.
    pub policies: Vec<Policy>,
    /// One or more per refused document, in document order and, within one, by line.
    pub errors: Vec<PolicyError>,
    /// Documents (and `List` items) of other kinds: Kustomizations, ConfigMaps, ...
    pub skipped: usize,
}

/// Every policy of a directory (or of files added one by one), the problems found, and how
/// many other documents were passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// In file order (files sorted by path), then document order. Identities are unique.
    pub policies: Vec<Policy>,
    /// Every refused document and every duplicate, in the same order.
    pub errors: Vec<PolicyError>,
    /// Documents of other kinds.
    pub skipped: usize,
}

impl PolicySet {
    /// An empty set.
    pub fn new() -> Self {
        PolicySet::default()
    }

    /// Adds a parsed file. A policy whose identity is already in the set is refused with an
    /// error naming where the first one is; the first stays, so that adding a file never takes
    /// away a policy already accepted.
    pub fn add(&mut self, parsed: ParsedFile) {
        self.errors.extend(parsed.errors);
        self.skipped += parsed.skipped;
        for policy in parsed.policies {
            let id = policy.id();
            // A scan without allocation: a set grows by one small file at a time, and a
            // thousand policies from the API are a thousand adds.
            if let Some(first) = self.policies.iter().find(|p| p.has_id(&id)) {
                let (file, line) = (&first.file, first.line);
                self.errors.push(PolicyError {
                    file: policy.file.clone(),
                    line: Some(policy.line),
                    column: Some(1),
                    field: "metadata.name".to_owned(),
                    message: format!(
                        "{id} is already defined at {file}:{line}; a kind, namespace and name \
                         name one policy"
                    ),
                });
                continue;
            }
            self.policies.push(policy);
        }
    }

    /// Parses `text` as the file `file_name` and adds it (see [`PolicySet::add`]).
    pub fn add_file(&mut self, text: &str, file_name: &str) {
        self.add(parse_file_in(text, file_name, DEFAULT_NAMESPACE));
    }

    /// The policy with this identity.
    pub fn get(&self, id: &PolicyId) -> Option<&Policy> {
        self.policies.iter().find(|p| &p.id() == id)
    }
}

/// Reads every manifest (`*.yaml`, `*.yml`, `*.json`) under `dir`, subdirectories included,
/// hidden ones (`.git`) excepted, in path order. Problems, including files that cannot be read,
/// are in [`PolicySet::errors`], named by their path relative to `dir`.
pub fn load_dir(dir: &Path) -> PolicySet {
    load_dir_cached(dir, &mut ParseCache::default())
}

/// Manifests as last parsed, by source name, with their text: a source is parsed again only
/// when its text changed (a change of one file among many, or of one API object, parses that
/// one). Each reading is a round; what a round did not parse is forgotten at its end.
#[derive(Debug, Default)]
pub struct ParseCache {
    last: std::collections::HashMap<String, (String, ParsedFile)>,
    this: std::collections::HashMap<String, (String, ParsedFile)>,
}

impl ParseCache {
    /// `text` from `source` parsed (as [`parse_file_in`] with the default namespace), or as
    /// parsed in the last round when the text is the same.
    pub fn parse(&mut self, source: &str, text: String) -> ParsedFile {
        let parsed = match self.last.remove(source) {
            Some((before, parsed)) if before == text => parsed,
            _ => parse_file_in(&text, source, DEFAULT_NAMESPACE),
        };
        self.this.insert(source.to_owned(), (text, parsed.clone()));
        parsed
    }

    /// Ends a round: the next one compares against what this one parsed.
    pub fn end_round(&mut self) {
        self.last = std::mem::take(&mut self.this);
    }
}

/// As [`load_dir`], through `cache`: only the files whose text changed are parsed again.
pub fn load_dir_cached(dir: &Path, cache: &mut ParseCache) -> PolicySet {
    let mut set = PolicySet::new();
    let mut files = Vec::new();
    collect_manifests(dir, dir, &mut files, &mut set.errors);
    files.sort();
    for path in files {
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => set.add(cache.parse(&name, text)),
                Err(_) => set.errors.push(file_error(&name, "is not UTF-8 text")),
            },
            Err(error) => set
                .errors
                .push(file_error(&name, format!("cannot be read: {error}"))),
        }
    }
    cache.end_round();
    set
}

fn file_error(file: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        file: file.to_owned(),
        line: None,
        column: None,
        field: String::new(),
        message: message.into(),
    }
}

fn collect_manifests(
    root: &Path,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<PolicyError>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            let name = dir.strip_prefix(root).unwrap_or(dir);
            let name = if name.as_os_str().is_empty() {
                dir
            } else {
                name
            };
            errors.push(file_error(
                &name.display().to_string(),
                format!("cannot list the directory: {error}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        // `metadata` follows symbolic links, so a linked directory of policies is read too.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            collect_manifests(root, &path, files, errors);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
}

/// Reads the policies of one file's text; `file_name` names it in errors. Namespaced policies
/// without a namespace go to [`DEFAULT_NAMESPACE`]. Duplicates are not looked for here (see
/// [`PolicySet::add`]).
pub fn parse_file(text: &str, file_name: &str) -> (Vec<Policy>, Vec<PolicyError>) {
    let parsed = parse_file_in(text, file_name, DEFAULT_NAMESPACE);
    (parsed.policies, parsed.errors)
}

/// [`parse_file`], putting namespaced policies without a namespace in `default_namespace`
/// (what `kubectl apply -n` or a Flux Kustomization's `targetNamespace` would do), and counting
/// the documents of other kinds.
pub fn parse_file_in(text: &str, file_name: &str, default_namespace: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for chunk in yaml::split_documents(text) {
        let mut d = Diagnostics::new(file_name);
        match yaml::parse_chunk(chunk) {
            Ok(root) => read_object(&mut d, &root, "", default_namespace, file_name, &mut parsed),
            Err((at, message)) => d.push(at, "", message),
        }
        let mut errors = d.errors;
        // Readers go field by field; a reader of the file goes line by line.
        errors.sort_by_key(|e| (e.line, e.column));
        parsed.errors.extend(errors);
    }
    parsed
}

fn read_object(
    d: &mut Diagnostics<'_>,
    root: &Node,
    path: &str,
    default_namespace: &str,
    file_name: &str,
    parsed: &mut ParsedFile,
) {
    let Value::Map(_) = &root.value else {
        d.push(
            root.at,
            path,
            "expected a Kubernetes object: a mapping with apiVersion, kind and metadata",
        );
        return;
    };
    let here = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    let (Some(kind), Some(api_version)) = (root.get_str("kind"), root.get_str("apiVersion")) else {
        let missing = if root.get_str("kind").is_none() {
            "kind"
        } else {
            "apiVersion"
        };
        let at = root.get(missing).map_or(root.at, |n| n.at);
        d.push(
            at,
            &here(missing),
            "required, but missing (or not a string): every manifest names its apiVersion and \
             kind",
        );
        return;
    };
    let before = d.count();
    let body = match (api_version, kind) {
        (networkpolicy::API_VERSION, networkpolicy::KIND) => {
            networkpolicy::parse(d, root, path, default_namespace).map(PolicyBody::Kubernetes)
        }
        (cilium::API_VERSION, cilium::KIND | cilium::CLUSTERWIDE_KIND) => {
            cilium::parse(d, root, path, kind, default_namespace).map(PolicyBody::Cilium)
        }
        (_, networkpolicy::KIND | cilium::KIND | cilium::CLUSTERWIDE_KIND) => {
            let served = if kind == networkpolicy::KIND {
                networkpolicy::API_VERSION
            } else {
                cilium::API_VERSION
            };
            let at = root.get("apiVersion").map_or(root.at, |n| n.at);
            d.push(
                at,
                &here("apiVersion"),
                format!(
                    "{:?}: {kind} is read as apiVersion {served}",
                    yaml::sanitize(api_version)
                ),
            );
            None
        }
        (_, list) if list == "List" || list.ends_with("List") && root.get("items").is_some() => {
            read_list(d, root, path, default_namespace, file_name, parsed);
            return;
        }
        _ => {
            parsed.skipped += 1;
            return;
        }
    };
    if let Some(body) = body
        && d.count() == before
    {
        parsed.policies.push(Policy {
            file: file_name.to_owned(),
            line: root.at.line.max(1),
            body,
        });
    }
}

fn read_list(
    d: &mut Diagnostics<'_>,
    root: &Node,
    path: &str,
    default_namespace: &str,
    file_name: &str,
    parsed: &mut ParsedFile,
) {
    let items_path = if path.is_empty() {
        "items".to_owned()
    } else {
        format!("{path}.items")
    };
    let Some(items) = root.get("items") else {
        return;
    };
    let items: &[Node] = match &items.value {
        Value::Seq(items) => items,
        Value::Null => &[],
        _ => {
            d.push(items.at, &items_path, "expected a list of objects");
            return;
        }
    };
    for (i, item) in items.iter().enumerate() {
        // Each item stands alone, as a document does: its own errors refuse only itself.
        let mut item_d = Diagnostics::new(file_name);
        read_object(
            &mut item_d,
            item,
            &format!("{items_path}[{i}]"),
            default_namespace,
            file_name,
            parsed,
        );
        for error in item_d.errors {
            let at = Pos {
                line: error.line.unwrap_or(0),
                column: error.column.unwrap_or(0),
            };
            d.push(at, &error.field, error.message);
        }
    }
}

/// `8080/TCP`, `80-81/UDP`, `http/ANY`, `every port/TCP`.
#[cfg(test)]
mod tests {
    use super::*;

    const DNS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-dns\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - ports:\n        - protocol: UDP\n          port: 53\n";

    #[test]
    fn one_bad_document_costs_only_itself() {
        let text = format!(
            "{DNS}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{a: b}}\n---\n# allow-dns.yaml\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: broken\nspec:\n  egress:\n    - ports:\n        - protocol: ICMP\n          port: 53\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: l7, namespace: web}}\nspec:\n  endpointSelector: {{}}\n  ingress: [{{}}]\n---\nkey: [unclosed\n"
        );
        let parsed = parse_file_in(&text, "allow-dns.yaml", "default");
        let ids: Vec<String> = parsed.policies.iter().map(|p| p.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "NetworkPolicy/default/allow-dns",
                "CiliumNetworkPolicy/web/l7"
            ]
        );
        assert_eq!(parsed.policies[1].line, 29);
        assert_eq!(parsed.skipped, 1);
        let errors: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(
            errors[0],
            "allow-dns.yaml:26:21: spec.egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP"
        );
        assert!(errors[1].starts_with("allow-dns.yaml:3"), "{errors:#?}");
    }

    #[test]
    fn lists_are_read_item_by_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: a, namespace: x}\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: b}\n    spec: {podSelctor: {}}\n  - apiVersion: v1\n    kind: Service\n    metadata: {name: s}\n";
        let parsed = parse_file_in(text, "list.yaml", "default");
        assert_eq!(parsed.policies.len(), 1);
        assert_eq!(parsed.policies[0].line, 4);
        assert_eq!(parsed.skipped, 1);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(
            parsed.errors[0].to_string(),
            "list.yaml:10:12: items[1].spec: unknown key \"podSelctor\"; accepted keys: podSelector, ingress, egress, policyTypes"
        );
    }

    #[test]
    fn kind_and_version_are_required_and_checked() {
        let text = "metadata: {name: x}\n---\napiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\n---\n- a\n";
        let parsed = parse_file_in(text, "k.yaml", "default");
        let errors: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("k.yaml:1:1: kind: required, but missing"));
        assert_eq!(
            errors[1],
            "k.yaml:3:13: apiVersion: \"extensions/v1beta1\": NetworkPolicy is read as apiVersion networking.k8s.io/v1"
        );
        assert!(errors[2].starts_with("k.yaml:7:1: expected a Kubernetes object"));
    }

    #[test]
    fn duplicates_keep_the_first() {
        let mut set = PolicySet::new();
        set.add_file(DNS, "a.yaml");
        set.add_file(&format!("# again\n{DNS}"), "b.yaml");
        assert_eq!(set.policies.len(), 1);
        assert_eq!(set.policies[0].file, "a.yaml");
        assert_eq!(
            set.errors[0].to_string(),
            "b.yaml:2:1: metadata.name: NetworkPolicy/default/allow-dns is already defined at a.yaml:1; a kind, namespace and name name one policy"
        );
        // The same name in another namespace, or of another kind, is another policy.
        set.add_file(
            &DNS.replace("name: allow-dns", "name: allow-dns\n  namespace: x"),
            "c.yaml",
        );
        assert_eq!(set.policies.len(), 2);
    }

    #[test]
    fn a_cached_reading_follows_every_change_of_the_directory() {
        let dir = std::env::temp_dir().join(format!("fs-load-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let np = |name: &str, port: u16| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: {port}}}]\n"
            )
        };
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        let names = |set: &PolicySet| -> Vec<String> {
            set.policies
                .iter()
                .map(|p| format!("{} {:?}", p.id(), p.body))
                .collect()
        };
        write("a.yaml", &np("a", 80));
        write("b.yaml", &np("b", 80));
        write("c.yaml", "kind: [");
        let mut cache = ParseCache::default();
        let first = load_dir_cached(&dir, &mut cache);
        assert_eq!(names(&first), names(&load_dir(&dir)));
        assert_eq!(first.errors, load_dir(&dir).errors);
        assert_eq!(first.policies.len(), 2);
        assert!(!first.errors.is_empty(), "c.yaml is refused");
        // A file changed, one removed, one added: the cached reading equals a fresh one, and
        // the refused file that did not change is still reported.
        write("a.yaml", &np("a", 81));
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        write("d.yaml", &np("d", 82));
        let second = load_dir_cached(&dir, &mut cache);
        let fresh = load_dir(&dir);
        assert_eq!(names(&second), names(&fresh));
        assert_eq!(second.errors, fresh.errors);
        assert_ne!(names(&second), names(&first));
        assert!(names(&second).iter().any(|n| n.contains("81")));
        assert!(!second.errors.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_seed_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/network-policies");
        let set = load_dir(&dir);
        assert_eq!(set.errors, vec![]);
        let mut ids: Vec<String> = set.policies.iter().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "CiliumNetworkPolicy/default/allow-get-only",
                "NetworkPolicy/default/allow-dns-egress",
                "NetworkPolicy/default/allow-frontend-to-api",
                "NetworkPolicy/default/allow-monitoring-scrape",
                "NetworkPolicy/default/default-deny-ingress",
            ]
        );
    }

    #[test]
    fn a_directory_is_walked_in_path_order() {
        let dir =
            std::env::temp_dir().join(format!("flowscope-policy-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        std::fs::create_dir_all(dir.join(".git")).expect("temp dir");
        std::fs::write(dir.join("b.yaml"), DNS).expect("write");
        std::fs::write(dir.join("sub/a.yml"), DNS.replace("allow-dns", "allow-a")).expect("write");
        std::fs::write(dir.join(".git/x.yaml"), "not: [valid").expect("write");
        std::fs::write(dir.join("kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [b.yaml]\n").expect("write");
        std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
        std::fs::write(dir.join("bad.json"), "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"j\"}, \"spec\": {\"policyTypes\": [\"Sideways\"]}}").expect("write");
        let set = load_dir(&dir);
        std::fs::remove_dir_all(&dir).expect("clean up");
        let files: Vec<&str> = set.policies.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["b.yaml", "sub/a.yml"]);
        assert_eq!(set.skipped, 1);
        assert_eq!(set.errors.len(), 1, "{:?}", set.errors);
        assert_eq!(
            set.errors[0].to_string(),
            "bad.json:1:117: spec.policyTypes[0]: \"Sideways\" is not Ingress or Egress"
        );
    }

    #[test]
    fn the_seed_policies_need_no_warning() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/network-policies");
        let set = load_dir(&dir);
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        assert!(set.policies.iter().all(|p| p.warnings().is_empty()));
    }
}
