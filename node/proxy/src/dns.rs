//! The DNS answers OCI pods get for the cluster's names (RFC 1035 messages,
//! just what a stub resolver sends: one question, no EDNS needed).
//!
//! Names under `cluster.local` are ours and answered from the cached
//! Services: `<svc>.<ns>.svc.cluster.local` is the Service's cluster IP (A),
//! for a headless Service the addresses of its ready endpoints, for an
//! ExternalName Service a CNAME; any other name under `cluster.local` is
//! NXDOMAIN. Other names are not ours ([`Answer::Forward`]): the pod's
//! resolver gets what the node's own resolver says.

use std::net::Ipv4Addr;

/// Record types and classes this responder knows.
pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// How long resolvers may keep an answer: short, as Services change.
const TTL: u32 = 5;

const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Recursion desired, copied into the answer.
    pub recursion: bool,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question's bytes (name, type, class), echoed in the answer.
    question: Vec<u8>,
}

/// What to answer a query with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records (an empty list is NOERROR without answers: the name exists
    /// but has no address of the asked type).
    Addresses(Vec<Ipv4Addr>),
    /// The name is an alias of another (an ExternalName Service).
    Alias(String),
    /// No such name.
    NoName,
    /// Not a cluster name: ask the node's resolver.
    Forward,
}

/// Why a packet is not a query this responder answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadQuery {
    #[error("the message is shorter than its header or question")]
    Truncated,
    #[error("not a standard query with exactly one question")]
    Unsupported,
    #[error("a name label is malformed or compressed in a question")]
    BadName,
}

fn u16_at(packet: &[u8], at: usize) -> Result<u16, BadQuery> {
    packet
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(BadQuery::Truncated)
}

/// Reads a query. Responses, other opcodes and several questions are refused.
pub fn parse(packet: &[u8]) -> Result<Query, BadQuery> {
    let id = u16_at(packet, 0)?;
    let flags = u16_at(packet, 2)?;
    let questions = u16_at(packet, 4)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 || questions != 1 {
        return Err(BadQuery::Unsupported);
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *packet.get(at).ok_or(BadQuery::Truncated)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(BadQuery::BadName);
        }
        let label = packet.get(at..at + len).ok_or(BadQuery::Truncated)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16_at(packet, at)?;
    let qclass = u16_at(packet, at + 2)?;
    let question = packet[12..at + 4].to_vec();
    Ok(Query {
        id,
        recursion: flags & 0x0100 != 0,
        name: labels.join("."),
        qtype,
        qclass,
        question,
    })
}

/// The answer to send for `query`. `Answer::Forward` has no local answer:
/// the caller relays the query instead.
pub fn respond(query: &Query, answer: &Answer) -> Vec<u8> {
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rcode = 0;
    match answer {
        Answer::Addresses(ips) if query.qtype == TYPE_A => {
            records.extend(ips.iter().map(|ip| (TYPE_A, ip.octets().to_vec())));
        }
        Answer::Addresses(_) => {}
        Answer::Alias(target) => records.push((TYPE_CNAME, encode_name(target))),
        Answer::NoName => rcode = RCODE_NXDOMAIN,
        // No resolver to relay to.
        Answer::Forward => rcode = RCODE_SERVFAIL,
    }
    if query.qclass != CLASS_IN && rcode == 0 {
        records.clear();
        rcode = RCODE_NOTIMP;
    }
    let mut out = header(query.id, query.recursion, rcode, 1, records.len() as u16);
    out.extend_from_slice(&query.question);
    for (rtype, data) in records {
        // The owner is the question's name: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// A FORMERR answer to a packet that did not parse (when it has an id).
pub fn format_error(packet: &[u8]) -> Option<Vec<u8>> {
    let id = u16_at(packet, 0).ok()?;
    Some(header(id, false, RCODE_FORMERR, 0, 0))
}

fn header(id: u16, recursion: bool, rcode: u16, questions: u16, answers: u16) -> Vec<u8> {
    // QR, AA, RA; RD echoed.
    let flags = 0x8000 | 0x0400 | 0x0080 | if recursion { 0x0100 } else { 0 } | rcode;
    let mut out = Vec::with_capacity(64);
    for field in [id, flags, questions, answers, 0, 0] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out
}

/// What a Service looks like to DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRecord {
    /// A cluster IP.
    ClusterIp(Ipv4Addr),
    /// Headless: its ready endpoints' addresses.
    Headless(Vec<Ipv4Addr>),
    /// ExternalName: an alias.
    External(String),
}

/// The answer for `name` (lower case, no trailing dot), with `service`
/// looking Services up as `(namespace, name)`.
pub fn lookup(
    name: &str,
    domain: &str,
    service: impl Fn(&str, &str) -> Option<ServiceRecord>,
) -> Answer {
    let Some(local) = name
        .strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return if name == domain {
            Answer::Addresses(Vec::new())
        } else {
            Answer::Forward
        };
    };
    let labels: Vec<&str> = local.split('.').collect();
    match labels.as_slice() {
        [svc, ns, "svc"] => match service(ns, svc) {
            Some(ServiceRecord::ClusterIp(ip)) => Answer::Addresses(vec![ip]),
            Some(ServiceRecord::Headless(ips)) => Answer::Addresses(ips),
            Some(ServiceRecord::External(target)) => Answer::Alias(target),
            None => Answer::NoName,
        },
        // `svc.cluster.local` and `<ns>.svc.cluster.local` exist as names.
        ["svc"] | [_, "svc"] => Answer::Addresses(Vec::new()),
        _ => Answer::NoName,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as busybox's nslookup sends it.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&encode_name(name));
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    fn services(ns: &str, name: &str) -> Option<ServiceRecord> {
        match (ns, name) {
            ("shop", "web") => Some(ServiceRecord::ClusterIp(Ipv4Addr::new(10, 96, 0, 7))),
            ("shop", "db") => Some(ServiceRecord::Headless(vec![
                Ipv4Addr::new(172, 17, 0, 3),
                Ipv4Addr::new(172, 17, 0, 4),
            ])),
            ("shop", "ext") => Some(ServiceRecord::External("example.com".into())),
            _ => None,
        }
    }

    #[test]
    fn parses_a_query() {
        let q = parse(&query("Web.Shop.svc.cluster.local", TYPE_A)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion);
        assert_eq!(q.name, "web.shop.svc.cluster.local");
        assert_eq!(q.qtype, TYPE_A);
        assert_eq!(parse(&[1, 2, 3]), Err(BadQuery::Truncated));
        let mut response = query("a", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse(&response), Err(BadQuery::Unsupported));
    }

    #[test]
    fn cluster_names_are_answered_and_others_forwarded() {
        let at = |name: &str| lookup(name, "cluster.local", services);
        assert_eq!(
            at("web.shop.svc.cluster.local"),
            Answer::Addresses(vec![Ipv4Addr::new(10, 96, 0, 7)])
        );
        assert_eq!(
            at("db.shop.svc.cluster.local"),
            Answer::Addresses(vec![
                Ipv4Addr::new(172, 17, 0, 3),
                Ipv4Addr::new(172, 17, 0, 4)
            ])
        );
        assert_eq!(
            at("ext.shop.svc.cluster.local"),
            Answer::Alias("example.com".into())
        );
        assert_eq!(at("gone.shop.svc.cluster.local"), Answer::NoName);
        // Search-path tries of a short name end under cluster.local: NXDOMAIN.
        assert_eq!(at("web.shop.shop.svc.cluster.local"), Answer::NoName);
        assert_eq!(at("shop.svc.cluster.local"), Answer::Addresses(vec![]));
        assert_eq!(at("example.com"), Answer::Forward);
    }

    #[test]
    fn answers_are_wire_format() {
        let q = parse(&query("web.shop.svc.cluster.local", TYPE_A)).unwrap();
        let out = respond(&q, &Answer::Addresses(vec![Ipv4Addr::new(10, 96, 0, 7)]));
        assert_eq!(&out[0..2], &[0x12, 0x34]);
        assert_eq!(
            u16_at(&out, 2).unwrap() & 0x800f,
            0x8000,
            "a NOERROR response"
        );
        assert_eq!(u16_at(&out, 6).unwrap(), 1, "one answer");
        assert_eq!(&out[out.len() - 4..], &[10, 96, 0, 7]);

        // AAAA of a name with only an IPv4 address: no answers, no error.
        let q6 = parse(&query("web.shop.svc.cluster.local", TYPE_AAAA)).unwrap();
        let out = respond(&q6, &Answer::Addresses(vec![Ipv4Addr::new(10, 96, 0, 7)]));
        assert_eq!(u16_at(&out, 6).unwrap(), 0);
        assert_eq!(u16_at(&out, 2).unwrap() & 0xf, 0);

        let out = respond(&q, &Answer::NoName);
        assert_eq!(u16_at(&out, 2).unwrap() & 0xf, RCODE_NXDOMAIN);

        let out = respond(&q, &Answer::Alias("example.com".into()));
        assert!(out.ends_with(&encode_name("example.com")));
    }
}
