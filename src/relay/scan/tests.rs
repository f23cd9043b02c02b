use super::*;

const LIMITS: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

/// Encode a frame; `mask` set for client frames.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i & 3]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const K: Option<[u8; 4]> = Some([1, 2, 3, 4]);

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

#[test]
fn counts_messages_and_bytes_across_many_frames() {
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.extend(frame(true, 1, b"hello", K));
    }
    let mut s = Scanner::new(true);
    assert_eq!(s.scan(&buf, LIMITS), (buf.len(), None));
    assert_eq!(s.take_tally(), (10, 50));
    assert!(s.at_boundary());
}

#[test]
fn every_split_point_gives_the_same_result() {
    // Headers, control frames and payloads split at every byte position.
    let mut stream = frame(false, 2, &[7; 300], K);
    stream.extend(frame(true, 9, b"ping", K));
    stream.extend(frame(true, 0, &[8; 70000], K));
    stream.extend(frame(true, 8, &close_payload(1000, b"bye"), K));
    for split in 0..stream.len() {
        let mut s = Scanner::new(true);
        let mut scratch = vec![0u8; MAX_STASH + stream.len()];
        let (a, stop_a) = s.scan(&stream[..split], LIMITS);
        assert_eq!(stop_a, None, "split {split}");
        let mut forwarded = stream[..a].to_vec();
        let pre = s.copy_stash(&mut scratch);
        assert_eq!(
            &scratch[..pre],
            &stream[a..split],
            "stash holds the unforwarded tail"
        );
        scratch[pre..pre + stream.len() - split].copy_from_slice(&stream[split..]);
        let chunk = &scratch[..pre + stream.len() - split];
        let (b, stop_b) = s.scan(chunk, LIMITS);
        forwarded.extend_from_slice(&chunk[..b]);
        assert_eq!(stop_b, Some(Stop::Close(Some(1000))), "split {split}");
        assert_eq!(forwarded, stream, "split {split}");
        assert_eq!(s.take_tally(), (1, 70300));
    }
}

#[test]
fn control_frames_are_judged_whole() {
    let f = frame(true, 8, &close_payload(1001, b"away"), K);
    let mut s = Scanner::new(true);
    // Header complete, payload not: nothing forwarded yet.
    assert_eq!(s.scan(&f[..7], LIMITS), (0, None));
    let mut scratch = vec![0u8; MAX_STASH + f.len()];
    let pre = s.copy_stash(&mut scratch);
    scratch[pre..pre + f.len() - 7].copy_from_slice(&f[7..]);
    assert_eq!(
        s.scan(&scratch[..f.len()], LIMITS),
        (f.len(), Some(Stop::Close(Some(1001))))
    );
}

#[test]
fn stash_fits_a_control_frame_with_a_64_bit_length() {
    // Caught by the stash check of fuzz target `scanner` (seed
    // control-64bit-length-held): a 125-byte ping whose length is in the
    // 8-byte form is 139 bytes; cut 135 bytes in, all 135 are held.
    let mut f = vec![0x89, 0x80 | 127];
    f.extend_from_slice(&125u64.to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f.extend_from_slice(&[b'p'; 125]);
    let mut s = Scanner::new(true);
    assert_eq!(s.scan(&f[..135], LIMITS), (0, None));
    let mut scratch = vec![0u8; MAX_STASH];
    let pre = s.copy_stash(&mut scratch);
    assert_eq!(pre, 135);
    scratch[pre..].copy_from_slice(&f[135..]);
    assert_eq!(s.scan(&scratch, LIMITS), (f.len(), None));
}

#[test]
fn protocol_violations_stop_before_the_frame() {
    let ok = frame(true, 1, b"ok", K);
    let cases: Vec<(Vec<u8>, bool, Violation)> = vec![
        (frame(true, 1, b"x", None), true, Violation::ClientUnmasked),
        (frame(true, 1, b"x", K), false, Violation::ServerMasked),
        (
            {
                let mut f = frame(true, 1, b"x", K);
                f[0] |= 0x40;
                f
            },
            true,
            Violation::ReservedBits,
        ),
        (frame(true, 3, b"x", K), true, Violation::ReservedOpcode),
        (frame(true, 11, b"", K), true, Violation::ReservedOpcode),
        (frame(false, 9, b"", K), true, Violation::FragmentedControl),
        (
            frame(true, 9, &[0; 126], K),
            true,
            Violation::ControlTooLong,
        ),
        (
            frame(true, 0, b"x", K),
            true,
            Violation::ContinuationWithoutMessage,
        ),
        (frame(true, 8, &[3], K), true, Violation::CloseOneByte),
        (
            frame(true, 8, &close_payload(1005, b""), K),
            true,
            Violation::InvalidCloseCode,
        ),
        (
            frame(true, 8, &close_payload(999, b""), K),
            true,
            Violation::InvalidCloseCode,
        ),
        (
            frame(true, 8, &close_payload(5000, b""), K),
            true,
            Violation::InvalidCloseCode,
        ),
    ];
    for (bad, masked, why) in cases {
        let mut s = Scanner::new(masked);
        let ok = if masked {
            ok.clone()
        } else {
            frame(true, 1, b"ok", None)
        };
        let mut buf = ok.clone();
        buf.extend_from_slice(&bad);
        let (n, stop) = s.scan(&buf, LIMITS);
        assert_eq!(n, ok.len(), "{why:?}");
        assert_eq!(stop, Some(Stop::Violation(why)), "{why:?}");
    }
}

#[test]
fn new_message_inside_fragmented_one() {
    let mut buf = frame(false, 1, b"a", K);
    buf.extend(frame(true, 1, b"b", K));
    let mut s = Scanner::new(true);
    let (n, stop) = s.scan(&buf, LIMITS);
    assert_eq!(n, 7);
    assert_eq!(stop, Some(Stop::Violation(Violation::MessageInsideMessage)));
}

#[test]
fn close_reason_must_be_utf8() {
    let f = frame(true, 8, &close_payload(1000, &[0xff, 0xfe]), K);
    let mut s = Scanner::new(true);
    assert_eq!(
        s.scan(&f, LIMITS),
        (0, Some(Stop::Violation(Violation::BadCloseReason)))
    );
    assert_eq!(Violation::BadCloseReason.close_code(), 1007);
}

#[test]
fn size_limits() {
    let limits = Limits {
        max_frame: 100,
        max_message: 150,
    };
    let mut s = Scanner::new(false);
    let big = frame(true, 2, &[0; 101], None);
    assert_eq!(
        s.scan(&big, limits),
        (0, Some(Stop::Violation(Violation::TooBig)))
    );
    // Two fragments of 80: the second pushes the message over 150.
    let mut s = Scanner::new(false);
    let mut buf = frame(false, 2, &[0; 80], None);
    buf.extend(frame(true, 0, &[0; 80], None));
    assert_eq!(
        s.scan(&buf, limits),
        (82, Some(Stop::Violation(Violation::TooBig)))
    );
    assert_eq!(Violation::TooBig.close_code(), 1009);
    // A huge declared length is refused from the header alone.
    let mut s = Scanner::new(false);
    let mut hdr = vec![0x82, 127];
    hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(
        s.scan(&hdr, limits),
        (0, Some(Stop::Violation(Violation::TooBig)))
    );
    let mut s = Scanner::new(false);
    hdr[2] = 0x80;
    assert_eq!(
        s.scan(&hdr, limits),
        (0, Some(Stop::Violation(Violation::InvalidLength)))
    );
}

#[test]
fn boundary_tracking() {
    let f = frame(true, 2, &[1; 1000], None);
    let mut s = Scanner::new(false);
    assert_eq!(s.scan(&f[..500], LIMITS), (500, None));
    assert!(!s.at_boundary());
    assert_eq!(s.scan(&f[500..], LIMITS), (f.len() - 500, None));
    assert!(s.at_boundary());
    assert!(!s.in_message());
}

#[test]
fn empty_close() {
    let mut s = Scanner::new(false);
    assert_eq!(
        s.scan(&frame(true, 8, b"", None), LIMITS),
        (2, Some(Stop::Close(None)))
    );
}
