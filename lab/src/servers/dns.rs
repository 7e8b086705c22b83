//! DNS for the lab: the table of names the pods' DNS servers answer, the server's reply to one
//! query, and the query and reply codec of the lookup probes. Messages are read and written by
//! simple-dns, the crate the observer reads DNS flows with.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{PoisonError, RwLock},
};

use simple_dns::{
    CLASS, Name, OPCODE, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE,
    header_buffer, rdata::RData,
};

/// DNS TTL of the answers: short, because lab pods come and go.
const DNS_TTL: u32 = 30;
/// The fixed header every DNS message starts with.
const DNS_HEADER: usize = 12;
/// A name on the wire is at most 255 octets, including the root label's zero octet (RFC 1035).
const DNS_MAX_NAME: usize = 255;
/// A label is at most 63 octets (RFC 1035).
const DNS_MAX_LABEL: usize = 63;
/// Where the opcode sits in the second byte of the header.
const OPCODE_SHIFT: u8 = 3;
const OPCODE_BITS: u8 = 0x78;

/// Names the lab's DNS servers answer: name -> IPv4 address. Names compare ASCII
/// case-insensitively and a trailing dot is optional, as in DNS itself. Shared behind an `Arc`
/// so the lab can add pods while servers run.
#[derive(Debug, Default)]
pub struct DnsTable {
    names: RwLock<HashMap<String, Ipv4Addr>>,
}

impl DnsTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a name; returns the address it had before.
    pub fn insert(&self, name: &str, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        // A panic elsewhere cannot leave the map half-written (inserts are single calls), so a
        // poisoned lock is still safe to use.
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.insert(normalize_name(name), ip)
    }

    /// Removes a name; returns the address it had.
    pub fn remove(&self, name: &str) -> Option<Ipv4Addr> {
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.remove(&normalize_name(name))
    }

    pub fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        names.get(&normalize_name(name)).copied()
    }

    pub fn len(&self) -> usize {
        self.names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The name a question asks for, lowercased, or `None` when a label holds bytes a table name
/// cannot (a dot, a control or non-ASCII byte), so it can match nothing: `a.b` as one label is
/// not the name `a.b`.
fn table_name(name: &Name<'_>) -> Option<String> {
    let mut text = String::new();
    for label in name.as_bytes() {
        if label.iter().any(|&b| b == b'.' || !b.is_ascii_graphic()) {
            return None;
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
    }
    Some(text)
}

/// The reply to one DNS query, or `None` when it must not be answered: too short to carry an ID
/// to answer to, or itself a response (answering those could loop between two servers).
///
/// The answers: an A record for a name in the table (authoritative, TTL [`DNS_TTL`]); an empty
/// NOERROR for other types of a known name; NXDOMAIN for unknown names; REFUSED for classes
/// other than IN and ANY; NOTIMP for opcodes other than QUERY; FORMERR for anything that is not
/// one readable question (simple-dns refuses a question whose type or class it does not know,
/// so those are FORMERR too).
pub(super) fn reply(query: &[u8], table: &DnsTable) -> Option<Vec<u8>> {
    let header = query.get(..DNS_HEADER)?;
    let id = header_buffer::id(header).ok()?;
    if header_buffer::has_flags(header, PacketFlag::RESPONSE).ok()? {
        return None;
    }
    let recursion_desired = header_buffer::has_flags(header, PacketFlag::RECURSION_DESIRED).ok()?;
    // Echo the opcode and RD, as RFC 1035 asks. simple-dns names only the assigned opcodes, so
    // the raw value is kept for the reply's header.
    let raw_opcode = header
        .get(2)
        .map_or(0, |b| (b & OPCODE_BITS) >> OPCODE_SHIFT);
    let opcode = header_buffer::opcode(header).ok()?;
    let mut reply = Packet::new_reply(id);
    *reply.opcode_mut() = opcode;
    if recursion_desired {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let finish = |packet: Packet<'_>| {
        let mut bytes = packet.build_bytes_vec_compressed().ok()?;
        if let Some(flags) = bytes.get_mut(2) {
            *flags = (*flags & !OPCODE_BITS) | (raw_opcode << OPCODE_SHIFT);
        }
        Some(bytes)
    };

    if opcode != OPCODE::StandardQuery {
        *reply.rcode_mut() = RCODE::NotImplemented;
        return finish(reply);
    }
    // Exactly one question and no answers or authority in a query. Additional records (an EDNS
    // OPT) are allowed and ignored: a responder without EDNS answers without one (RFC 6891).
    let parsed = Packet::parse(query).ok().filter(|packet| {
        packet.questions.len() == 1 && packet.answers.is_empty() && packet.name_servers.is_empty()
    });
    let Some(question) = parsed.and_then(|packet| packet.questions.into_iter().next()) else {
        *reply.rcode_mut() = RCODE::FormatError;
        return finish(reply);
    };
    if !matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY) {
        *reply.rcode_mut() = RCODE::Refused;
        reply.questions.push(question);
        return finish(reply);
    }
    // The table is the whole truth for these names, so the answers are authoritative, and an
    // unknown name does not exist.
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    let found = table_name(&question.qname).and_then(|name| table.lookup(&name));
    match found {
        None => *reply.rcode_mut() = RCODE::NameError,
        // A known name has only an A record; other types get an empty NOERROR (NODATA).
        Some(ip) if matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY) => {
            reply.answers.push(ResourceRecord::new(
                question.qname.clone(),
                CLASS::IN,
                DNS_TTL,
                RData::A(ip.into()),
            ));
        }
        Some(_) => {}
    }
    // The question is echoed as it came, case included (the answer's name points back at it).
    reply.questions.push(question);
    finish(reply)
}

/// A DNS reply as the lookup probes see it.
#[derive(Debug)]
pub(super) struct DnsResponse {
    pub rcode: RCODE,
    pub addresses: Vec<Ipv4Addr>,
}

/// The name of a response code, as dig prints it ("NOERROR", "NXDOMAIN").
pub(super) fn rcode_name(rcode: RCODE) -> String {
    match rcode {
        RCODE::NoError => "NOERROR".into(),
        RCODE::FormatError => "FORMERR".into(),
        RCODE::ServerFailure => "SERVFAIL".into(),
        RCODE::NameError => "NXDOMAIN".into(),
        RCODE::NotImplemented => "NOTIMP".into(),
        RCODE::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

/// A recursion-desired query for one name and type, class IN. Labels are 1 to 63 bytes of
/// anything, and the name at most 255 bytes on the wire, as RFC 1035 allows; `a..b` is refused
/// rather than quietly read as `a.b`.
pub(super) fn encode_query(id: u16, name: &str, qtype: TYPE) -> Result<Vec<u8>, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut wire_len = 1; // the root label's zero octet
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > DNS_MAX_LABEL {
                return Err(format!(
                    "invalid name {name:?}: labels are 1 to 63 bytes long"
                ));
            }
            wire_len += 1 + label.len();
        }
    }
    if wire_len > DNS_MAX_NAME {
        return Err(format!(
            "invalid name {name:?}: longer than 255 bytes on the wire"
        ));
    }
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    query.questions.push(Question::new(
        // Checked above; the lab also asks for names simple-dns would call invalid (any byte
        // is allowed in a label on the wire).
        Name::new_unchecked(trimmed),
        qtype.into(),
        CLASS::IN.into(),
        false,
    ));
    query
        .build_bytes_vec()
        .map_err(|e| format!("invalid name {name:?}: {e}"))
}

/// The reply to query `id`, or `None` if `packet` is not one (wrong ID, not a response, or
/// malformed).
pub(super) fn parse_response(packet: &[u8], id: u16) -> Option<DnsResponse> {
    let packet = Packet::parse(packet).ok()?;
    if packet.id() != id || !packet.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let addresses = packet
        .answers
        .iter()
        .filter(|record| record.class == CLASS::IN)
        .filter_map(|record| match &record.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect();
    Some(DnsResponse {
        rcode: packet.rcode(),
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, time::Duration};

    use super::{
        super::{Protocol, dns_probe, dns_query, probe::dns_exchange, test_util::*},
        *,
    };
    use crate::servers::App;

    fn raw_dns(server: std::net::SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket.connect(server).unwrap();
        socket.send(query).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 1024];
        socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    fn rcode_of(reply: &[u8]) -> RCODE {
        header_buffer::rcode(reply).unwrap()
    }

    #[test]
    fn dns_answers_known_names_with_their_address() {
        let (servers, dns) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        let web = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(dns_query(addr, "web.lab", TIMEOUT), Ok(vec![web]));
        assert_eq!(dns_query(addr, "WEB.Lab.", TIMEOUT), Ok(vec![web]));

        // Names added while serving are answered.
        dns.insert("db.lab", Ipv4Addr::new(10, 0, 0, 6));
        let (probe, addresses) = dns_probe(addr, "db.lab", TIMEOUT);
        assert_eq!((probe.connected, probe.detail.as_str()), (true, "NOERROR"));
        assert_ne!(probe.source_port, 0);
        assert_eq!(addresses, [Ipv4Addr::new(10, 0, 0, 6)]);

        // The answer on the wire: authoritative, the question echoed verbatim (case kept), one
        // A record pointing back at the question's name, TTL 30.
        let query = encode_query(0xBEEF, "Web.lab", TYPE::A).unwrap();
        let reply = raw_dns(addr, &query).unwrap();
        assert_eq!(&reply[..2], &[0xBE, 0xEF]);
        assert_eq!(reply[2], 0x85, "QR, AA and RD set");
        assert_eq!(reply[3], 0x00, "NOERROR");
        assert_eq!(&reply[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&reply[12..query.len()], &query[12..]);
        assert_eq!(
            &reply[query.len()..],
            &[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 5]
        );
    }

    #[test]
    fn dns_nxdomain_and_empty_aaaa() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        assert_eq!(
            dns_query(addr, "nope.lab", TIMEOUT),
            Err("NXDOMAIN".to_string())
        );
        let (_, aaaa) = dns_exchange(addr, "web.lab", TYPE::AAAA, TIMEOUT);
        let aaaa = aaaa.unwrap();
        assert_eq!((aaaa.rcode, aaaa.addresses.len()), (RCODE::NoError, 0));
        let (_, aaaa) = dns_exchange(addr, "nope.lab", TYPE::AAAA, TIMEOUT);
        assert_eq!(aaaa.unwrap().rcode, RCODE::NameError);
    }

    #[test]
    fn dns_survives_malformed_packets() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Dns)]);
        let addr = servers.local_addrs()[0];
        let header = |flags: u16, qdcount: u16| {
            let mut packet = vec![0x12, 0x34];
            packet.extend_from_slice(&flags.to_be_bytes());
            packet.extend_from_slice(&qdcount.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            packet
        };
        let with = |mut packet: Vec<u8>, rest: &[u8]| {
            packet.extend_from_slice(rest);
            packet
        };
        let long_name: Vec<u8> = (0..5)
            .flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat())
            .collect();

        // Too short for an ID, or a response: dropped.
        assert_eq!(raw_dns(addr, &[0x12]), None);
        assert_eq!(
            raw_dns(addr, &with(header(0x8000, 1), b"\x00\x00\x01\x00\x01")),
            None
        );

        let formerr: [Vec<u8>; 6] = [
            header(0x0100, 1),                                              // no question
            with(header(0x0100, 1), b"\x3fabc"),                            // label past the end
            with(header(0x0100, 1), b"\xc0\x0c\x00\x01\x00\x01"), // pointer in the question
            with(header(0x0100, 1), b"\x40abc\x00\x00\x01\x00\x01"), // reserved label type
            with(header(0x0100, 2), b"\x03web\x03lab\x00\x00\x01\x00\x01"), // two questions
            with(
                header(0x0100, 1),
                &[&long_name[..], b"\x00\x00\x01\x00\x01"].concat(),
            ),
        ];
        for packet in formerr {
            let reply = raw_dns(addr, &packet).expect("a FORMERR reply");
            assert_eq!(&reply[..2], &[0x12, 0x34]);
            assert_eq!(rcode_of(&reply), RCODE::FormatError, "{packet:?}");
        }
        // A server status request (opcode 2) and a reserved opcode (3): NOTIMP, the opcode
        // echoed.
        for opcode in [2u16, 3] {
            let packet = with(
                header(opcode << 11, 1),
                b"\x03web\x03lab\x00\x00\x01\x00\x01",
            );
            let reply = raw_dns(addr, &packet).unwrap();
            assert_eq!(
                (rcode_of(&reply), u16::from(reply[2] >> 3 & 0x0F)),
                (RCODE::NotImplemented, opcode)
            );
        }
        let chaos = with(header(0x0100, 1), b"\x03web\x03lab\x00\x00\x01\x00\x03");
        let reply = raw_dns(addr, &chaos).unwrap();
        assert_eq!(rcode_of(&reply), RCODE::Refused);
        assert_eq!(&reply[12..], &chaos[12..], "the question echoed");

        assert_eq!(
            dns_query(addr, "web.lab", TIMEOUT),
            Ok(vec![Ipv4Addr::new(10, 0, 0, 5)])
        );
    }

    #[test]
    fn dns_codec_round_trip() {
        let table = DnsTable::new();
        table.insert("a.b", Ipv4Addr::new(1, 2, 3, 4));
        let query = encode_query(7, "A.B.", TYPE::A).unwrap();
        let answer = reply(&query, &table).unwrap();
        let response = parse_response(&answer, 7).unwrap();
        assert_eq!(response.rcode, RCODE::NoError);
        assert_eq!(response.addresses, [Ipv4Addr::new(1, 2, 3, 4)]);
        assert!(
            parse_response(&answer, 8).is_none(),
            "another query's reply"
        );
        assert!(parse_response(&query, 7).is_none(), "not a response");
        // Truncations of a valid reply never panic the parser.
        for len in 0..answer.len() {
            let _ = parse_response(&answer[..len], 7);
            let _ = reply(&query[..len.min(query.len())], &table);
        }
        // A label holding a dot cannot match the name it would spell.
        let mut dotted = encode_query(7, "x", TYPE::A).unwrap();
        dotted.splice(12..14, *b"\x03a.b");
        assert_eq!(rcode_of(&reply(&dotted, &table).unwrap()), RCODE::NameError);
        // ANY is answered like A; EDNS (an OPT record) is accepted and not echoed.
        let mut any = encode_query(9, "a.b", TYPE::A).unwrap();
        any[DNS_HEADER + 6] = 255; // the low byte of QTYPE, after "\x01a\x01b\x00"
        let response = parse_response(&reply(&any, &table).unwrap(), 9).unwrap();
        assert_eq!(response.addresses, [Ipv4Addr::new(1, 2, 3, 4)]);
        let mut edns = encode_query(10, "a.b", TYPE::A).unwrap();
        edns[11] = 1; // one additional record:
        edns.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        let answer = reply(&edns, &table).unwrap();
        assert_eq!(header_buffer::additional_records(&answer).unwrap(), 0);
        assert_eq!(
            parse_response(&answer, 10).unwrap().addresses,
            [Ipv4Addr::new(1, 2, 3, 4)]
        );

        assert!(encode_query(1, "a..b", TYPE::A).is_err());
        assert!(encode_query(1, &"a".repeat(64), TYPE::A).is_err());
        assert!(encode_query(1, &vec!["a".repeat(63); 5].join("."), TYPE::A).is_err());
        assert_eq!(rcode_name(RCODE::NameError), "NXDOMAIN");
        assert_eq!(rcode_name(RCODE::NOTAUTH), "NOTAUTH");
    }

    #[test]
    fn dns_table_ignores_case_and_trailing_dot() {
        let table = DnsTable::new();
        assert!(table.is_empty());
        assert_eq!(table.insert("Web.Lab.", Ipv4Addr::new(10, 0, 0, 1)), None);
        assert_eq!(table.lookup("web.lab"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(table.lookup("WEB.LAB."), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            table.insert("web.lab", Ipv4Addr::new(10, 0, 0, 2)),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.remove("WEB.lab"), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(table.lookup("web.lab"), None);
    }
}
