//! Target `chunked`: a client's chunked request body → the gateway's strict
//! decoder (`tidegate::http::chunked`), which the HTTP proxy feeds with
//! whatever each socket read returned.
//!
//! Checks beyond "no panic":
//! - every answer stays inside its input: `consumed` ≤ the bytes given, a
//!   data range lies within what was consumed;
//! - the outcome does not depend on how TCP split the body: decoding the
//!   input whole and in pieces of the size named by its first byte gives
//!   the same body bytes, the same end, and the same verdict (an error at
//!   one split is an error at every split);
//! - after the end, the rest of the input (a next request) is left
//!   unconsumed and identical at every split.

use tidegate::http::chunked::{ChunkError, Decoder};

/// Decode `input` handed over in pieces of `step` bytes, as reads would.
/// Returns the body, and what is left after the end (`None`: no end).
fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<Vec<u8>>), ChunkError> {
    let mut decoder = Decoder::default();
    let mut body = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let progress = decoder.decode(&pending)?;
        assert!(
            progress.consumed <= pending.len(),
            "consumed past the input"
        );
        if let Some(range) = progress.data.clone() {
            assert!(range.start <= range.end && range.end <= progress.consumed);
            body.extend_from_slice(&pending[range]);
        }
        pending.drain(..progress.consumed);
        if progress.done {
            assert!(decoder.is_done());
            pending.extend_from_slice(&input[fed..]);
            return Ok((body, Some(pending)));
        }
        if progress.consumed == 0 && progress.data.is_none() {
            if fed == input.len() {
                return Ok((body, None));
            }
            let end = (fed + step).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
        }
    }
}

pub fn run(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(first % 16) + 1;
    let whole = decode(input, input.len().max(1));
    let split = decode(input, step);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "outcome depends on the split ({step})"),
        (Err(_), Err(_)) => {}
        _ => panic!("verdict depends on the split ({step}): {whole:?} vs {split:?}"),
    }
}
