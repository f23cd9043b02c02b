use super::*;

/// Inflate a whole message (tail appended), at most `limit` bytes out.
fn inflate_all(inf: &mut Inflater, data: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    let mut all = Vec::new();
    for input in [data, &TAIL[..]] {
        let mut at = 0;
        loop {
            let mut out = Vec::with_capacity(1024);
            at += inf.step(&input[at..], &mut out).map_err(|_| "invalid")?;
            all.extend_from_slice(&out);
            if all.len() > limit {
                return Err("too big");
            }
            if at == input.len() && out.len() < out.capacity() {
                break;
            }
        }
    }
    inf.end_message();
    Ok(all)
}

#[test]
fn round_trip_with_and_without_context_takeover() {
    for takeover in [true, false] {
        let mut def = Deflater::new(6, 15, takeover);
        let mut inf = Inflater::new(15, takeover);
        let msg = br#"{"type":"update","room":"general","text":"hello hello hello"}"#;
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let wire = def.piece(msg, true);
            assert!(!wire.ends_with(&TAIL));
            sizes.push(wire.len());
            assert_eq!(
                inflate_all(&mut inf, &wire, 1 << 20).as_deref(),
                Ok(&msg[..])
            );
        }
        if takeover {
            assert!(sizes[1] < sizes[0], "the window helps the second message");
        } else {
            assert_eq!(sizes[0], sizes[1]);
            assert!(def.z.is_none() && inf.z.is_none(), "no context kept");
        }
    }
}

#[test]
fn a_message_in_pieces_inflates_to_the_whole() {
    let mut def = Deflater::new(6, 12, true);
    let mut wire = def.piece(b"first half, ", false);
    wire.extend(def.piece(b"second half", true));
    let mut inf = Inflater::new(12, true);
    assert_eq!(
        inflate_all(&mut inf, &wire, 1 << 20).as_deref(),
        Ok(&b"first half, second half"[..])
    );
}

#[test]
fn a_bomb_stops_at_the_limit_and_garbage_is_invalid() {
    let zeros = vec![0u8; 8 << 20];
    let wire = Deflater::new(9, 15, false).piece(&zeros, true);
    assert!(wire.len() < 16 * 1024, "{} bytes", wire.len());
    let mut inf = Inflater::new(15, false);
    assert_eq!(inflate_all(&mut inf, &wire, 64 * 1024), Err("too big"));
    let mut inf = Inflater::new(15, false);
    assert_eq!(
        inflate_all(&mut inf, &[0xff, 0xff, 0xff, 0xff], 1024),
        Err("invalid")
    );
}
