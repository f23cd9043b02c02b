//! Target `upstream_response`: the bytes an upstream answers an upgrade
//! request with → `upstream::parse_head` → for a 101 `upstream::switch`
//! (RFC 6455 §4.1 checks, header filter), for any other status
//! `upstream::refusal_fields` → the response the client gets.
//!
//! Checks beyond "no panic" — an upstream cannot write into the client's
//! response what the gateway did not mean to send:
//! - a complete head never claims more bytes than given, parses the same
//!   from exactly its bytes, and every shorter prefix asks for more (below
//!   `MAX_RESPONSE_HEAD`) or is refused (at or above it);
//! - an accepted 101 chose an offered sub-protocol (or none) and passes on
//!   no handshake or hop-by-hop header; the client's 101 built from it
//!   parses back as one complete head with exactly the headers meant;
//! - a relayed refusal has a status in 200–599, asks for at most
//!   `MAX_RELAYED_BODY` bytes of body, and its response to the client
//!   parses back with the same status and nothing injected.

use tidegate::handshake::{accept_key, Rejection};
use tidegate::upstream::{
    is_handshake_or_hop_header, parse_head, refusal_fields, switch, switching_protocols,
    MAX_RELAYED_BODY, MAX_RESPONSE_HEAD,
};

/// The key of the request this answer is for (the seeds answer it).
const KEY: &str = "dGlkZWdhdGUtZnV6ei1rZXk=";
const PROTOCOLS: &[&str] = &["chat", "v2.mux", "graphql-ws"];

/// Input: byte 0: bits 0–2 which of [`PROTOCOLS`] were offered; the rest:
/// what the upstream sent.
pub fn run(data: &[u8]) {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let offered: Vec<String> = PROTOCOLS
        .iter()
        .enumerate()
        .filter(|(i, _)| control & (1 << i) != 0)
        .map(|(_, p)| p.to_string())
        .collect();
    let head = match parse_head(data) {
        Ok(Some(head)) => head,
        Ok(None) => return assert!(data.len() < MAX_RESPONSE_HEAD),
        Err(_) => return,
    };
    let len = head.len;
    assert!(len <= data.len());
    let again = parse_head(&data[..len])
        .expect("the head alone parses as it did with bytes behind it")
        .expect("the head alone is complete");
    assert_eq!((again.status, &again.headers), (head.status, &head.headers));
    for i in 0..4 {
        let cut = data.get(i).map_or(0, |b| *b as usize * 37 + i) % len;
        match parse_head(&data[..cut]) {
            Ok(None) => assert!(cut < MAX_RESPONSE_HEAD),
            Err(_) => assert!(cut >= MAX_RESPONSE_HEAD, "prefix of {cut} refused"),
            Ok(Some(h)) => panic!("prefix of {cut} of a {len}-byte head complete: {h:?}"),
        }
    }
    if head.status == 101 {
        check_switch(head, &offered);
    } else {
        check_refusal(head);
    }
}

fn check_switch(head: tidegate::upstream::Head, offered: &[String]) {
    let Ok(sw) = switch(head, KEY, offered) else {
        return;
    };
    if let Some(p) = &sw.protocol {
        assert!(offered.contains(p), "{p:?} was not offered");
    }
    for (name, _) in &sw.headers {
        assert!(!is_handshake_or_hop_header(name), "{name:?} passed on");
    }
    let accept = accept_key(KEY);
    let out = switching_protocols(&accept, (sw.protocol.as_deref(), None), &sw.headers);
    let expected = 3 + usize::from(sw.protocol.is_some()) + sw.headers.len();
    let mut hs = vec![httparse::EMPTY_HEADER; expected + 1];
    let mut resp = httparse::Response::new(&mut hs);
    let parsed = resp.parse(&out);
    assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(out.len())),
        "client 101 {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(resp.code, Some(101));
    assert_eq!(
        resp.headers.len(),
        expected,
        "headers injected into the 101"
    );
    for (h, (name, value)) in resp.headers[expected - sw.headers.len()..]
        .iter()
        .zip(&sw.headers)
    {
        assert_eq!((h.name, h.value), (name.as_str(), value.as_bytes()));
    }
}

fn check_refusal(head: tidegate::upstream::Head) {
    let status = head.status;
    let Ok((want, content_type)) = refusal_fields(&head) else {
        return;
    };
    assert!((200..=599).contains(&status), "status {status} relayed");
    assert!(want <= MAX_RELAYED_BODY);
    let rejection = Rejection::UpstreamStatus {
        status,
        content_type: content_type.clone(),
        body: vec![b'x'; want.min(64)],
    };
    assert!(!rejection.label().is_empty());
    let out = rejection.response();
    let mut hs = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut hs);
    let Ok(httparse::Status::Complete(len)) = resp.parse(&out) else {
        panic!("refusal {:?}", String::from_utf8_lossy(&out));
    };
    assert_eq!(resp.code, Some(status));
    let types: Vec<&[u8]> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value)
        .collect();
    assert!(types.len() <= 1, "{types:?}");
    if let (Some(ct), Some(sent)) = (&content_type, types.first()) {
        assert_eq!(ct.as_bytes(), *sent);
    }
    assert!(len <= out.len());
}
