use super::*;
use crate::frame::Opcode::{Binary, Close, Continuation, Ping, Text};

const LIMITS: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

/// A masked client frame.
fn frame(fin: bool, opcode: impl Into<u8>, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode.into()];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Feed `wire` cut at every position in `cuts`; join data pieces per message.
fn run(wire: &[u8], cut: usize) -> (Vec<Piece>, Result<(), Violation>) {
    let mut r = ClientReader::default();
    let mut out = Vec::new();
    for chunk in wire.chunks(cut.max(1)) {
        if let Err(e) = r.feed(BytesMut::from(chunk), LIMITS, &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fn joined(pieces: &[Piece]) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    let mut cur: Option<(u8, Vec<u8>)> = None;
    for p in pieces {
        if let Piece::Data {
            kind, fin, payload, ..
        } = p
        {
            let c = cur.get_or_insert((*kind, Vec::new()));
            c.1.extend_from_slice(payload);
            if *fin {
                msgs.push(cur.take().expect("set above"));
            }
        }
    }
    msgs
}

#[test]
fn messages_survive_every_split() {
    let mut wire = frame(true, Text, "héllo wörld".as_bytes());
    wire.extend(frame(false, Binary, &[1, 2, 3]));
    wire.extend(frame(true, Ping, b"p"));
    wire.extend(frame(true, Continuation, &[4; 300]));
    wire.extend(frame(true, Binary, &[]));
    wire.extend(frame(true, Close, &[0x03, 0xe8, b'o', b'k']));
    for cut in 1..wire.len() {
        let (pieces, r) = run(&wire, cut);
        assert_eq!(r, Ok(()), "cut {cut}");
        let msgs = joined(&pieces);
        assert_eq!(msgs.len(), 3, "cut {cut}");
        assert_eq!(msgs[0], (KIND_TEXT, "héllo wörld".as_bytes().to_vec()));
        let mut bin = vec![1, 2, 3];
        bin.extend([4; 300]);
        assert_eq!(msgs[1], (KIND_BINARY, bin));
        assert_eq!(msgs[2], (KIND_BINARY, vec![]));
        assert!(pieces.contains(&Piece::Ping(Bytes::from_static(b"p"))));
        assert_eq!(
            pieces.last(),
            Some(&Piece::Close(Some(1000), "ok".into())),
            "cut {cut}"
        );
    }
}

#[test]
fn violations() {
    let unmasked = vec![0x81, 0x01, b'a'];
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (unmasked, 1002),
        (frame(true, 0x3u8, b""), 1002),
        (frame(false, Ping, b""), 1002),
        (frame(true, Continuation, b"x"), 1002),
        (
            [frame(false, Text, b"a"), frame(true, Text, b"b")].concat(),
            1002,
        ),
        (frame(true, Text, &[0xff]), 1007),
        (frame(true, Text, &[0xe2, 0x82]), 1007),
        (frame(true, Close, &[0x03]), 1002),
        (frame(true, Close, &[0x03, 0xed]), 1002),
        (frame(true, Close, &[0x03, 0xe8, 0xff]), 1007),
        (
            vec![0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4],
            1009,
        ),
    ];
    for (wire, code) in cases {
        for cut in [1, 2, 5, wire.len()] {
            let (_, r) = run(&wire, cut);
            assert_eq!(
                r.map_err(|v| v.close_code()),
                Err(code),
                "{wire:?} cut {cut}"
            );
        }
    }
}

#[test]
fn utf8_split_inside_a_character_is_fine() {
    // "€" is e2 82 ac; split across two fragments.
    let mut wire = frame(false, Text, &[b'a', 0xe2]);
    wire.extend(frame(true, Continuation, &[0x82, 0xac]));
    let (pieces, r) = run(&wire, wire.len());
    assert_eq!(r, Ok(()));
    assert_eq!(joined(&pieces)[0].1, "a€".as_bytes());
}

#[test]
fn every_piece_of_a_compressed_message_says_so() {
    // FIN + RSV1 + text, payload that is not UTF-8 (deflate data is not
    // checked until inflated); then a plain text message.
    let mut wire = frame(true, 0x40 | u8::from(Text), &[0xff, 0xfe, 0x00, 0x80]);
    wire.extend(frame(true, Text, b"plain"));
    for cut in 1..wire.len() {
        let mut r = ClientReader::default();
        r.allow_compressed(true);
        let mut out = Vec::new();
        for chunk in wire.chunks(cut) {
            r.feed(BytesMut::from(chunk), LIMITS, &mut out)
                .expect("compressed text is not checked as UTF-8");
        }
        let flags: Vec<bool> = out
            .iter()
            .filter_map(|p| match p {
                Piece::Data {
                    compressed,
                    payload,
                    ..
                } if !payload.is_empty() => Some(*compressed),
                _ => None,
            })
            .collect();
        let plain_at = flags.iter().position(|c| !c).expect("the plain message");
        assert!(flags[..plain_at].iter().all(|c| *c), "cut {cut}: {flags:?}");
        assert!(
            flags[plain_at..].iter().all(|c| !*c),
            "cut {cut}: {flags:?}"
        );
    }
}
