//! The policy as the L7 proxy applies it: one immutable snapshot per installed policy
//! revision, consulted for every request, so a policy change applies from the next request on
//! connections already open.
//!
//! A request is judged by the same compiled tables the datapath holds (the entry for the local
//! endpoint, the remote identity and the port), plus the HTTP rules of the policies behind that
//! entry, compiled into matchers once per revision. The datapath sent the connection here
//! because that entry was "through the proxy"; after a reload the entry may admit the
//! connection at L4 only (every request passes), send it through the proxy with other rules, or
//! no longer admit it at all (the connection is reset, as Envoy does on an L3/L4 deny).

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use flowscope_common::direction;
use flowscope_model::flow::Policy as FlowPolicy;
use flowscope_policy::{
    Compiled, Decision, DirectionTable,
    l7::{HttpMatcher, HttpRequestFields},
    lookup, unmatched_allowed,
};

use crate::policy::Attribution;

/// A local endpoint: one whose tables this node enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub endpoint_id: u32,
    /// Its host-side interface, which the proxy's flows are reported at.
    pub ifindex: u32,
}

/// Which policy sent the connection to the proxy: the server's ingress rules or the client's
/// egress rules (each has its own listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Ingress,
    Egress,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Ingress => "ingress",
            Side::Egress => "egress",
        }
    }
}

/// What happens to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to the server.
    Allow,
    /// Answered by the proxy (403, or gRPC PERMISSION_DENIED); the server never sees it.
    Deny,
    /// The rules would deny it; audit mode forwards it and reports it as AUDIT.
    Audit,
    /// The policy no longer admits the connection at L3/L4: it is reset.
    Reset,
}

/// The verdict on one request.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub outcome: Outcome,
    /// The policies that decided, for the flow's `*_allowed_by` / `*_denied_by`.
    pub attribution: Option<Arc<Attribution>>,
    /// The interface of the endpoint the flows are reported at: the server's for ingress
    /// rules, the client's for egress rules.
    pub ifindex: u32,
    /// Header matches with the LOG action that did not match (the request passed anyway).
    pub logged_mismatches: usize,
}

/// One installed policy revision, as the proxy needs it. The default is the empty policy the
/// proxy starts with, before the first install: every request finds no local endpoint.
#[derive(Default)]
pub struct L7Policy {
    pub revision: u64,
    pub audit: bool,
    /// Local endpoints by address.
    local: HashMap<IpAddr, LocalEndpoint>,
    /// The identity of every pod address (local or not).
    identities: HashMap<IpAddr, u32>,
    compiled: Compiled,
    /// Endpoint id -> index into `compiled.endpoints`.
    tables: HashMap<u32, usize>,
    /// One per `compiled.http_rule_sets`; `None` when a rule set does not compile, which then
    /// matches nothing (fails closed; the policy crate refuses such rules when loading).
    matchers: Vec<Option<HttpMatcher>>,
    /// `compiled.policies` as flows name them.
    policies: Vec<FlowPolicy>,
}

/// The answer of one side (ingress at the server, egress at the client).
enum SideResult {
    /// No local endpoint on this side: nothing to say.
    NotLocal,
    Allowed(Vec<u32>),
    Denied(Vec<u32>),
    L4Denied(Vec<u32>),
}

impl L7Policy {
    pub fn new(
        revision: u64,
        audit: bool,
        compiled: Compiled,
        local: HashMap<IpAddr, LocalEndpoint>,
        identities: HashMap<IpAddr, u32>,
        policies: Vec<FlowPolicy>,
    ) -> Self {
        let tables = compiled
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, t)| (t.endpoint_id, i))
            .collect();
        let matchers = compiled
            .http_rule_sets
            .iter()
            .map(|rules| match HttpMatcher::new(rules) {
                Ok(m) => Some(m),
                Err(err) => {
                    tracing::warn!("HTTP rules that do not compile match nothing: {err}");
                    None
                }
            })
            .collect();
        L7Policy {
            revision,
            audit,
            local,
            identities,
            compiled,
            tables,
            matchers,
            policies,
        }
    }

    /// Whether an address belongs to a local endpoint.
    pub fn local_endpoint(&self, ip: &IpAddr) -> Option<LocalEndpoint> {
        self.local.get(ip).copied()
    }

    /// The security identity of an address, as the datapath's IP -> identity map has it.
    fn identity(&self, ip: IpAddr) -> u32 {
        match self.identities.get(&ip) {
            Some(id) => *id,
            None => self.compiled.address_identity(ip),
        }
    }

    fn table(&self, endpoint_id: u32, dir: u8) -> Option<&DirectionTable> {
        let tables = &self.compiled.endpoints[*self.tables.get(&endpoint_id)?];
        Some(if dir == direction::INGRESS {
            &tables.ingress
        } else {
            &tables.egress
        })
    }

    fn side(
        &self,
        local: Option<LocalEndpoint>,
        dir: u8,
        remote: IpAddr,
        port: u16,
        req: &impl HttpRequestFields,
        logged: &mut usize,
    ) -> SideResult {
        let Some(local) = local else {
            return SideResult::NotLocal;
        };
        let Some(table) = self.table(local.endpoint_id, dir) else {
            // A local endpoint no policy speaks of: not isolated.
            return SideResult::Allowed(Vec::new());
        };
        let identity = self.identity(remote);
        let Some(entry) = lookup(table, identity, PROTO_TCP, port) else {
            return if unmatched_allowed(table, dir == direction::INGRESS, identity) {
                SideResult::Allowed(Vec::new())
            } else {
                SideResult::L4Denied(Vec::new())
            };
        };
        if entry.decision == Decision::Deny {
            return SideResult::L4Denied(entry.policies.clone());
        }
        if !entry.http {
            return SideResult::Allowed(entry.policies.clone());
        }
        let mut matched = Vec::new();
        for grant in &entry.l7 {
            let Some(Some(m)) = self.matchers.get(grant.rule_set as usize) else {
                continue;
            };
            if let Some(hit) = m.check(req) {
                *logged += hit.log_mismatches.len();
                matched.push(grant.policy);
            }
        }
        if matched.is_empty() {
            let mut restricting: Vec<u32> = entry.l7.iter().map(|g| g.policy).collect();
            restricting.dedup();
            SideResult::Denied(restricting)
        } else {
            matched.dedup();
            SideResult::Allowed(matched)
        }
    }

    /// Judges one request on a connection from `client` to `server` (the original
    /// destination) that `side`'s rules sent to the proxy. For egress rules, a destination that
    /// is itself a local endpoint with HTTP rules on its ingress is judged by those too: its
    /// own ingress proxy is not passed again, so both sets apply here, as two proxies in a row
    /// would apply them.
    pub fn judge(
        &self,
        side: Side,
        client: IpAddr,
        server: IpAddr,
        port: u16,
        req: &impl HttpRequestFields,
    ) -> Judgement {
        let server_ep = self.local_endpoint(&server);
        let client_ep = self.local_endpoint(&client);
        let mut logged = 0;
        // The server's ingress rules apply on either side: on ingress they are this proxy's
        // own, on egress those of the proxy the connection does not pass again.
        let ingress = self.side(
            server_ep,
            direction::INGRESS,
            client,
            port,
            req,
            &mut logged,
        );
        let (primary, secondary, dir, reported_at) = match side {
            Side::Ingress => (ingress, SideResult::NotLocal, direction::INGRESS, server_ep),
            Side::Egress => (
                self.side(client_ep, direction::EGRESS, server, port, req, &mut logged),
                ingress,
                direction::EGRESS,
                client_ep,
            ),
        };
        let ifindex = reported_at.map_or(0, |e| e.ifindex);
        let attribution = |direction: u8, deny: bool, policies: &[u32]| {
            (!policies.is_empty()).then(|| {
                Arc::new(Attribution {
                    direction,
                    deny,
                    policies: policies
                        .iter()
                        .filter_map(|i| self.policies.get(*i as usize).cloned())
                        .collect(),
                })
            })
        };
        let (outcome, attribution) = match (&primary, &secondary) {
            // The endpoint the listener was chosen for is gone from this node.
            (SideResult::NotLocal, _) => (Outcome::Reset, None),
            (SideResult::L4Denied(p), _) => (Outcome::Reset, attribution(dir, true, p)),
            (_, SideResult::L4Denied(p)) => {
                (Outcome::Reset, attribution(direction::INGRESS, true, p))
            }
            (SideResult::Denied(p), _) => (Outcome::Deny, attribution(dir, true, p)),
            (_, SideResult::Denied(p)) => (Outcome::Deny, attribution(direction::INGRESS, true, p)),
            (SideResult::Allowed(p), _) => (Outcome::Allow, attribution(dir, false, p)),
        };
        let outcome = match outcome {
            Outcome::Deny | Outcome::Reset if self.audit => Outcome::Audit,
            o => o,
        };
        Judgement {
            outcome,
            attribution,
            ifindex,
            logged_mismatches: logged,
        }
    }

    /// The local endpoints whose ingress sends some connections to the proxy, as their
    /// addresses with their interfaces: what the datapath's L7 ingress map holds.
    pub fn ingress_redirects(&self) -> Vec<(IpAddr, u32)> {
        let mut out: Vec<(IpAddr, u32)> = self
            .local
            .iter()
            .filter(|(_, ep)| {
                self.table(ep.endpoint_id, direction::INGRESS)
                    .is_some_and(|t| t.entries.iter().any(|e| e.http))
            })
            .map(|(ip, ep)| (*ip, ep.ifindex))
            .collect();
        out.sort();
        out
    }
}

const PROTO_TCP: u8 = 6;
