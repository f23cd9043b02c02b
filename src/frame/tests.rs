use super::*;
use std::collections::HashSet;

const KEY: [u8; 4] = [1, 2, 3, 4];

fn header(first: u8, len: usize, mask: Option<[u8; 4]>) -> Header {
    let op = Opcode::from_bits(first & 0x0f).unwrap_or(Opcode::Binary);
    let mut bytes = encode_header(first & 0x80 != 0, op, len, mask)
        .as_slice()
        .to_vec();
    // Keep the raw bits (reserved opcodes, RSV) the encoder cannot express.
    bytes[0] = first;
    parse_header(&bytes)
        .expect("a whole header")
        .expect("a valid length")
}

#[test]
fn headers_encode_in_the_shortest_form_and_parse_back() {
    assert_eq!(
        encode_header(true, Opcode::Binary, 5, Some([0; 4])).as_slice(),
        &[0x82, 0x85, 0, 0, 0, 0]
    );
    assert_eq!(
        encode_header(false, Opcode::Text, 300, None).as_slice(),
        &[0x01, 126, 1, 44]
    );
    for (len, size) in [
        (0, 2),
        (125, 2),
        (126, 4),
        (65535, 4),
        (65536, 10),
        (70_000, 10),
    ] {
        for mask in [None, Some(KEY)] {
            let h = encode_header(true, Opcode::Binary, len, mask);
            let extra = if mask.is_some() { 4 } else { 0 };
            assert_eq!(h.as_slice().len(), size + extra, "len {len}");
            let bytes = h.as_slice();
            for cut in 0..bytes.len() {
                assert_eq!(parse_header(&bytes[..cut]), None, "len {len} cut {cut}");
            }
            let p = parse_header(bytes).expect("whole").expect("valid");
            assert_eq!(
                (p.fin, p.opcode, p.len, p.masked, p.header_len),
                (true, 2, len as u64, mask.is_some(), bytes.len())
            );
            assert_eq!(p.mask, mask.unwrap_or_default());
        }
    }
}

#[test]
fn a_length_with_the_top_bit_set_is_refused() {
    let mut h = vec![0x82, 127];
    h.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(parse_header(&h), Some(Err(Violation::InvalidLength)));
}

#[test]
fn written_frames_unmask_to_their_parts() {
    let mut out = Vec::new();
    let code = 1001u16.to_be_bytes();
    write_frame(
        &mut out,
        true,
        Opcode::Close,
        &[&code, b"going away"],
        Some(KEY),
    );
    let h = parse_header(&out).expect("whole").expect("valid");
    assert_eq!((h.opcode, h.len, h.mask), (0x8, 12, KEY));
    let payload: Vec<u8> = out[h.header_len..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ KEY[i & 3])
        .collect();
    assert_eq!(parse_close(&payload), Ok(Some((1001, "going away"))));
}

#[test]
fn header_rules_and_their_reasons() {
    use Violation::*;
    // (first byte, length, masked, expect_masked, in_message, result)
    type Case = (u8, usize, bool, bool, bool, Result<Opcode, Violation>);
    let cases: &[Case] = &[
        (0x81, 5, true, true, false, Ok(Opcode::Text)),
        (0x00, 5, true, true, true, Ok(Opcode::Continuation)),
        (0x89, 125, true, true, true, Ok(Opcode::Ping)),
        (0x88, 0, false, false, false, Ok(Opcode::Close)),
        (0xC1, 5, true, true, false, Err(ReservedBits)),
        (0x81, 5, false, true, false, Err(ClientUnmasked)),
        (0x81, 5, true, false, false, Err(ServerMasked)),
        (0x83, 0, true, true, false, Err(ReservedOpcode)),
        (0x8B, 0, true, true, false, Err(ReservedOpcode)),
        (0x80, 1, true, true, false, Err(ContinuationWithoutMessage)),
        (0x82, 1, true, true, true, Err(MessageInsideMessage)),
        (0x09, 0, true, true, false, Err(FragmentedControl)),
        (0x8A, 126, true, true, false, Err(ControlTooLong)),
        (0x88, 1, true, true, false, Err(CloseOneByte)),
    ];
    for &(first, len, masked, expect_masked, in_message, want) in cases {
        let h = header(first, len, masked.then_some(KEY));
        assert_eq!(
            check_header(&h, expect_masked, in_message, false),
            want,
            "{first:#x} len {len}"
        );
    }
}

#[test]
fn compressed_sessions_allow_rsv1_on_a_first_data_frame_only() {
    use Violation::*;
    let check = |first: u8, in_message: bool| {
        let h = header(first, 5, Some(KEY));
        check_header(&h, true, in_message, true)
    };
    assert_eq!(check(0xC1, false), Ok(Opcode::Text));
    assert_eq!(check(0x42, false), Ok(Opcode::Binary));
    assert_eq!(check(0xC0, true), Err(MisplacedCompressedBit));
    assert_eq!(check(0xC9, false), Err(MisplacedCompressedBit));
    assert_eq!(check(0xC8, true), Err(MisplacedCompressedBit));
    assert_eq!(check(0xA1, false), Err(ReservedBits));
    assert_eq!(check(0x91, false), Err(ReservedBits));
    assert_eq!(MisplacedCompressedBit.close_code(), 1002);
}

#[test]
fn size_limits() {
    let l = Limits {
        max_frame: 100,
        max_message: 150,
    };
    assert_eq!(l.check(100, 0), Ok(()));
    assert_eq!(l.check(101, 0), Err(Violation::TooBig));
    assert_eq!(l.check(80, 70), Ok(()));
    assert_eq!(l.check(80, 80), Err(Violation::TooBig));
    assert_eq!(l.check(1, u64::MAX), Err(Violation::TooBig));
}

#[test]
fn close_payloads() {
    let with = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    assert_eq!(parse_close(&[]), Ok(None));
    assert_eq!(parse_close(&[3]), Err(Violation::CloseOneByte));
    assert_eq!(parse_close(&with(1000, b"ok")), Ok(Some((1000, "ok"))));
    assert_eq!(
        parse_close(&with(1005, b"")),
        Err(Violation::InvalidCloseCode)
    );
    assert_eq!(
        parse_close(&with(1000, &[0xff])),
        Err(Violation::BadCloseReason)
    );
    for code in [1000, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
        assert!(close_code_allowed(code), "{code}");
    }
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert!(!close_code_allowed(code), "{code}");
    }
}

#[test]
fn violations_know_code_reason_and_a_distinct_label() {
    use Violation::*;
    let all = [
        ReservedBits,
        ClientUnmasked,
        ServerMasked,
        ReservedOpcode,
        InvalidLength,
        FragmentedControl,
        ControlTooLong,
        ContinuationWithoutMessage,
        MessageInsideMessage,
        CloseOneByte,
        InvalidCloseCode,
        TooBig,
        BadCloseReason,
        BadUtf8,
    ];
    let labels: HashSet<_> = all.iter().map(|v| v.label()).collect();
    assert_eq!(labels.len(), all.len());
    for v in all {
        // A Close payload is 125 bytes; two of them are the code.
        assert!(!v.reason().is_empty() && v.reason().len() <= 123, "{v:?}");
        assert_eq!(v.to_string(), v.reason());
        let want = match v {
            TooBig => 1009,
            BadCloseReason | BadUtf8 => 1007,
            _ => 1002,
        };
        assert_eq!(v.close_code(), want, "{v:?}");
    }
    // Reasons clients see today (docs/configuration.md).
    assert_eq!(TooBig.reason(), "message too big");
    assert_eq!(BadCloseReason.reason(), "invalid close reason");
}
