//! FQDN and node-name globs (`*.example.com`, `prod/k8s-*`), turned into one anchored regex per
//! filter field at compile time, with Hubble's character rules: patterns are lowercase DNS
//! names, `*` matches any run of `[-.0-9a-z]`.

use regex::Regex;

/// What an empty cluster or node part of a node-name pattern matches: any DNS-like name.
const ANY_NAME: &str = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)";

/// Hubble writes flows of the default cluster without a cluster prefix.
const DEFAULT_CLUSTER: &str = "default";

/// Appends the regex for one FQDN pattern, or says what is wrong with it.
fn push_fqdn_pattern(out: &mut String, pattern: &str) -> Result<(), String> {
    let trimmed = pattern.trim();
    let canonical = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if canonical.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    if canonical.ends_with('.') {
        return Err("the pattern ends with more than one dot".to_owned());
    }
    for c in canonical.chars() {
        match c {
            '.' => out.push_str(r"\."),
            '*' => out.push_str("[-.0-9a-z]*"),
            '-' | '_' | '0'..='9' | 'a'..='z' => out.push(c),
            _ => {
                return Err(format!(
                    "{c:?} is not allowed; use letters, digits, '-', '_', '.' and '*'"
                ));
            }
        }
    }
    Ok(())
}

fn anchored(alternatives: &[String]) -> Result<Regex, String> {
    Regex::new(&format!(r"\A(?:{})\z", alternatives.join("|"))).map_err(|e| e.to_string())
}

/// Compiles FQDN patterns into one regex matching any of them. On error returns the index of
/// the bad pattern and the reason.
pub(crate) fn fqdn_regex(patterns: &[String]) -> Result<Regex, (usize, String)> {
    let mut alternatives = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        let mut re = String::new();
        push_fqdn_pattern(&mut re, pattern).map_err(|e| (i, e))?;
        alternatives.push(re);
    }
    anchored(&alternatives).map_err(|e| (0, e))
}

/// Compiled node-name patterns.
///
/// Hubble matches `cluster/node` patterns against the node name with `default/` prepended when
/// it has no cluster part. Prepending would allocate per flow, so the patterns whose cluster part
/// accepts "default" are also compiled into a second regex for bare node names.
#[derive(Clone, Debug)]
pub(crate) struct NodeNamePatterns {
    qualified: Regex,
    bare: Option<Regex>,
}

impl NodeNamePatterns {
    pub(crate) fn compile(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut qualified = Vec::with_capacity(patterns.len());
        let mut bare = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            if pattern.is_empty() {
                return Err((i, "the pattern is empty".to_owned()));
            }
            let (cluster, node) = match pattern.split('/').collect::<Vec<_>>().as_slice() {
                [node] => ("", *node),
                [cluster, node] => (*cluster, *node),
                _ => return Err((i, "use at most one '/', as in \"cluster/node\"".to_owned())),
            };
            let part = |p: &str| -> Result<String, (usize, String)> {
                if p.is_empty() {
                    return Ok(ANY_NAME.to_owned());
                }
                let mut re = String::new();
                push_fqdn_pattern(&mut re, p).map_err(|e| (i, e))?;
                Ok(re)
            };
            let cluster_re = part(cluster)?;
            let node_re = part(node)?;
            let accepts_default = anchored(std::slice::from_ref(&cluster_re))
                .map_err(|e| (i, e))?
                .is_match(DEFAULT_CLUSTER);
            if accepts_default {
                bare.push(node_re.clone());
            }
            qualified.push(format!("{cluster_re}/{node_re}"));
        }
        Ok(NodeNamePatterns {
            qualified: anchored(&qualified).map_err(|e| (0, e))?,
            bare: if bare.is_empty() {
                None
            } else {
                Some(anchored(&bare).map_err(|e| (0, e))?)
            },
        })
    }

    pub(crate) fn is_match(&self, node_name: &str) -> bool {
        if node_name.is_empty() {
            return false;
        }
        if node_name.contains('/') {
            self.qualified.is_match(node_name)
        } else {
            self.bare.as_ref().is_some_and(|re| re.is_match(node_name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fqdn_globs() {
        let re = fqdn_regex(&strings(&["*.Example.com.", "api.github.com"])).unwrap();
        assert!(re.is_match("www.example.com"));
        assert!(re.is_match("a.b.example.com"));
        assert!(re.is_match("api.github.com"));
        assert!(!re.is_match("example.com"));
        assert!(!re.is_match("api.github.com.evil"));
        // Like Hubble, '*' does not cover '_'.
        assert!(!re.is_match("my_host.example.com"));
    }

    #[test]
    fn fqdn_errors_name_the_pattern() {
        assert_eq!(fqdn_regex(&strings(&["ok.com", ""])).unwrap_err().0, 1);
        assert!(
            fqdn_regex(&strings(&["a.com.."]))
                .unwrap_err()
                .1
                .contains("more than one dot")
        );
        assert!(
            fqdn_regex(&strings(&["a b.com"]))
                .unwrap_err()
                .1
                .contains("' '")
        );
    }

    #[test]
    fn node_names_with_and_without_cluster() {
        let p = NodeNamePatterns::compile(&strings(&["k8s*"])).unwrap();
        assert!(p.is_match("k8s1"));
        assert!(p.is_match("default/k8s1"));
        assert!(p.is_match("prod/k8s1"));
        assert!(!p.is_match("node1"));
        assert!(!p.is_match(""));

        let p = NodeNamePatterns::compile(&strings(&["prod/*"])).unwrap();
        assert!(p.is_match("prod/k8s1"));
        assert!(
            !p.is_match("k8s1"),
            "bare names belong to the default cluster"
        );
        assert!(!p.is_match("dev/k8s1"));

        let p = NodeNamePatterns::compile(&strings(&["default/"])).unwrap();
        assert!(p.is_match("k8s1"));
        assert!(p.is_match("default/k8s1"));
        assert!(!p.is_match("other/k8s1"));

        assert_eq!(
            NodeNamePatterns::compile(&strings(&["a", "a/b/c"]))
                .unwrap_err()
                .0,
            1
        );
    }
}
