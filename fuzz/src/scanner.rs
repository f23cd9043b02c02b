//! Target `scanner`: the passthrough relay's frame-header scanner
//! (`tidegate::relay::scan::Scanner`), fed the same byte stream twice: once
//! whole, and once cut into chunks the way reads arrive, with the stash
//! protocol the relay follows (`copy_stash` in front of the next chunk).
//!
//! Input layout (see `seeds/scanner/` and fuzz/make-seeds.py):
//! - byte 0: bit 0 = `expect_masked` (client → gateway); bits 1–2 pick the
//!   limits (see [`limits`]);
//! - byte 1: number of cuts (mod 8); then one byte per cut: chunk length;
//! - the rest: the stream.
//!
//! Checks on every scan: the forwardable prefix never exceeds what was
//! given; without a stop, every byte is either forwardable or stashed; the
//! stash is the unforwarded tail, fits `MAX_STASH` and only exists at a frame
//! boundary; a `Close` stop ends with a whole Close frame. Across the two
//! runs: the same bytes forwarded, the same stop at the same stream offset,
//! the same tallies and the same final state — the result must not depend
//! on how TCP split the stream.

use tidegate::frame::{close_code_allowed, Limits};
use tidegate::relay::scan::{Scanner, Stop, MAX_STASH};

/// Limits chosen by two bits of the first byte: the gateway's defaults, and
/// small ones so `TooBig` is reached with short inputs.
fn limits(flags: u8) -> Limits {
    match (flags >> 1) & 3 {
        0 => Limits {
            max_frame: 64 << 20,
            max_message: 64 << 20,
        },
        1 => Limits {
            max_frame: 100,
            max_message: 300,
        },
        2 => Limits {
            max_frame: 1,
            max_message: 1,
        },
        _ => Limits {
            max_frame: u64::MAX >> 1,
            max_message: u64::MAX,
        },
    }
}

/// What a run over the whole stream came to.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Stream bytes that may be forwarded.
    forwarded: usize,
    stop: Option<Stop>,
    messages: u64,
    bytes: u64,
    stash: Vec<u8>,
    at_boundary: bool,
    in_message: bool,
}

/// One `scan`, with the checks that hold for any single call. `buf` is the
/// stash followed by the new chunk.
fn scan_once(
    s: &mut Scanner,
    buf: &[u8],
    limits: Limits,
    tally: &mut (u64, u64),
) -> (usize, Option<Stop>, Vec<u8>) {
    let (n, stop) = s.scan(buf, limits);
    assert!(n <= buf.len(), "forwardable {n} of {} bytes", buf.len());
    let mut stash = vec![0u8; buf.len().max(MAX_STASH) + 256];
    let held = s.copy_stash(&mut stash);
    stash.truncate(held);
    assert!(
        held <= MAX_STASH,
        "stash of {held} bytes (MAX_STASH {MAX_STASH})"
    );
    if held > 0 {
        assert!(s.at_boundary(), "stash while inside a payload");
    }
    match stop {
        None => {
            assert_eq!(n + held, buf.len(), "bytes neither forwardable nor stashed");
            assert_eq!(&buf[n..], &stash[..], "stash is not the unforwarded tail");
        }
        Some(Stop::Close(code)) => {
            let len = s.close_len();
            assert!((2..=n).contains(&len), "close of {len} bytes in {n}");
            assert_eq!(buf[n - len], 0x88, "a Close stop not on a Close frame");
            if let Some(code) = code {
                assert!(close_code_allowed(code), "close code {code} let through");
            }
        }
        Some(Stop::Violation(v)) => {
            assert!((1000..=1011).contains(&v.close_code()));
            assert!(!v.reason().is_empty() && v.reason().len() <= 123);
        }
    }
    let (m, b) = s.take_tally();
    tally.0 += m;
    tally.1 += b;
    assert!(
        b <= n as u64,
        "{b} payload bytes counted in a {n}-byte prefix"
    );
    (n, stop, stash)
}

fn whole(stream: &[u8], masked: bool, limits: Limits) -> Outcome {
    let mut s = Scanner::new(masked);
    let mut tally = (0, 0);
    let (n, stop, stash) = scan_once(&mut s, stream, limits, &mut tally);
    Outcome {
        forwarded: n,
        stop,
        messages: tally.0,
        bytes: tally.1,
        stash,
        at_boundary: s.at_boundary(),
        in_message: s.in_message(),
    }
}

fn chunked(stream: &[u8], cuts: &[u8], masked: bool, limits: Limits) -> Outcome {
    let mut s = Scanner::new(masked);
    let mut tally = (0, 0);
    let mut forwarded = 0;
    let mut stash = Vec::new();
    let mut rest = stream;
    let mut cuts = cuts.iter();
    loop {
        let take = cuts
            .next()
            .map_or(rest.len(), |c| (*c as usize).min(rest.len()));
        let (chunk, after) = rest.split_at(take);
        rest = after;
        // As the relay does: held-back bytes go in front of the next read.
        let mut buf = vec![0u8; MAX_STASH.max(stash.len()) + chunk.len()];
        let pre = s.copy_stash(&mut buf);
        assert_eq!(&buf[..pre], &stash[..]);
        buf.truncate(pre);
        buf.extend_from_slice(chunk);
        let (n, stop, held) = scan_once(&mut s, &buf, limits, &mut tally);
        forwarded += n;
        stash = held;
        if stop.is_some() || rest.is_empty() {
            return Outcome {
                forwarded,
                stop,
                messages: tally.0,
                bytes: tally.1,
                stash,
                at_boundary: s.at_boundary(),
                in_message: s.in_message(),
            };
        }
    }
}

pub fn run(data: &[u8]) {
    let [flags, ncuts, rest @ ..] = data else {
        return;
    };
    let ncuts = (*ncuts as usize % 8).min(rest.len());
    let (cuts, stream) = rest.split_at(ncuts);
    let masked = flags & 1 != 0;
    let limits = limits(*flags);
    let one = whole(stream, masked, limits);
    assert!(one.bytes <= one.forwarded as u64);
    let many = chunked(stream, cuts, masked, limits);
    assert_eq!(one, many, "scanning in chunks {cuts:?} changed the outcome");
}
