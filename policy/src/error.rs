//! The one error type of the crate: a problem in a policy file, said the way a compiler would.
//!
//! Every refusal, whether the YAML is broken, a key is misspelt or a CIDR is out of range,
//! reaches the user as one line naming the file, the line and column, the field, and what
//! would be accepted: `allow-dns.yaml:12:9: spec.egress[0].ports[0].protocol: "ICMP" is not
//! TCP, UDP or SCTP`. A document with a problem is not loaded; the other documents of its file
//! are. `file` is the file as named to [`crate::parse_file`], or its path under the directory
//! given to [`crate::load_dir`]. The type is the YAML reader's, shared with the lab file.

pub use flowscope_meta::yaml::Problem as PolicyError;
