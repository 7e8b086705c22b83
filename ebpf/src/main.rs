//! flowscope's datapath: one tc program per direction on every watched interface.
//!
//! Each packet is parsed (Ethernet, up to two VLAN tags, IPv4/IPv6 with extension headers,
//! TCP/UDP/SCTP/ICMP), looked up in conntrack and, for a new connection, checked against the deny
//! list. Events go to userspace per connection, not per packet: when a connection starts, when a
//! TCP control flag (SYN, FIN, RST) first appears in a direction, for every dropped packet, and
//! as a periodic summary of a long connection's counters. Anything the parser does not
//! understand passes untouched and is counted.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline asm for the BPF atomic add (see datapath::atomic_add); the crate builds on nightly.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod datapath;

// The crate is also compiled for the host by `cargo clippy --workspace`; there it is empty.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
