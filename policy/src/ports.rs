//! Transport protocols and ports as policies name them, shared by both policy kinds and by the
//! connections [`verdict`](mod@crate::verdict) judges.

use std::fmt;

use serde::Serialize;

/// A transport protocol a policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// `TCP`.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

impl Protocol {
    /// Kubernetes' spelling: upper case, exactly (the API server refuses `tcp`).
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// A port as a policy names it: a number, or the name of a container port of the pod the
/// traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum PortRef {
    /// 1 to 65535.
    Number(u16),
    /// An IANA service name such as `serve-80-tcp`, resolved against the destination pod.
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}
