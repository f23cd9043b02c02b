use super::*;

#[test]
fn rfc_example_masked_hello() {
    // RFC 6455 §5.7: a single-frame masked text message "Hello".
    let mut out = Vec::new();
    push_client_frame(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
    assert_eq!(
        out,
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    let h = parse_header(&out).unwrap().unwrap();
    assert_eq!(h.opcode, OP_TEXT);
    assert!(h.fin);
    assert_eq!(h.len, 5);
    assert_eq!(h.header_len, 6);
    let mut body = out[6..].to_vec();
    apply_mask(&mut body, h.mask.unwrap(), 0);
    assert_eq!(&body, b"Hello");
}

#[test]
fn length_encodings_round_trip() {
    for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
        let mut out = Vec::new();
        write_header(&mut out, true, OP_BINARY, None, len);
        let h = parse_header(&out).unwrap().unwrap();
        assert_eq!(h.len, len, "len {len}");
        assert_eq!(h.header_len, out.len());
        // Every strict prefix is "need more", never an error.
        for cut in 0..out.len() {
            assert_eq!(parse_header(&out[..cut]), Ok(None), "len {len} cut {cut}");
        }
    }
}

#[test]
fn rejects_bad_headers() {
    assert_eq!(parse_header(&[0xC2, 0x00]), Err(FrameError::ReservedBits));
    assert_eq!(
        parse_header(&[0x83, 0x00]),
        Err(FrameError::UnknownOpcode(3))
    );
    assert_eq!(
        parse_header(&[0x09, 0x00]),
        Err(FrameError::BadControlFrame)
    );
    assert_eq!(
        parse_header(&[0x89, 126, 0, 126]),
        Err(FrameError::BadControlFrame)
    );
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(parse_header(&huge), Err(FrameError::LengthOverflow));
}

#[test]
fn chunked_unmasking_matches_whole() {
    let mask = [1, 2, 3, 4];
    let original = payload(37);
    let mut whole = original.clone();
    apply_mask(&mut whole, mask, 0);
    let mut chunked = original.clone();
    let (a, b) = chunked.split_at_mut(7);
    apply_mask(a, mask, 0);
    apply_mask(b, mask, 7);
    assert_eq!(whole, chunked);
    apply_mask(&mut chunked, mask, 0);
    assert_eq!(chunked, original);
}

#[test]
fn batch_holds_identical_frames() {
    let b = FrameBatch::new(OP_BINARY, 200, 3, [9, 8, 7, 6]);
    assert_eq!(b.frame_len(), 200 + 2 + 2 + 4);
    assert_eq!(b.capacity(), 3);
    assert_eq!(b.frames(2).len(), 2 * b.frame_len());
    assert_eq!(b.frames(10).len(), 3 * b.frame_len());
    let one = b.frames(1);
    assert_eq!(&b.frames(2)[one.len()..], one);
}

#[test]
fn close_frame_carries_code() {
    let f = client_close(1000, [0, 0, 0, 0]);
    assert_eq!(f, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
}

#[test]
fn window_resumes_mid_frame() {
    let b = FrameBatch::new(OP_BINARY, 10, 4, [1, 2, 3, 4]);
    let fl = b.frame_len();
    let all = b.frames(4);
    // Writing 3 bytes, then resuming at offset 3, yields the same stream.
    let first = b.window(0, 3).to_vec();
    let rest = b.window(3, 2 * fl - 3).to_vec();
    assert_eq!([first, rest].concat(), &all[..2 * fl]);
    assert_eq!(b.window(fl + 5, usize::MAX).len(), 4 * fl - 5);
}

#[test]
fn batch_is_capped_in_bytes() {
    let b = FrameBatch::new(OP_BINARY, 100_000, 64, [0; 4]);
    assert_eq!(b.capacity(), 2);
    let b = FrameBatch::new(OP_BINARY, 1_000_000, 64, [0; 4]);
    assert_eq!(b.capacity(), 1);
    // A window past the end of the batch wraps to the same frame bytes.
    assert_eq!(b.window(b.frame_len() + 3, 10), b.window(3, 10));
}
