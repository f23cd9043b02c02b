use super::*;

fn asked() -> Asked<'static> {
    Asked {
        head_request: false,
        client_minor: 1,
        close: false,
        cookie: None,
    }
}

/// A socket that delivers `data` at most `step` bytes per read.
struct Pieces {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let end = (self.at + self.step.min(buf.remaining())).min(self.data.len());
        buf.put_slice(&self.data[self.at..end]);
        self.at = end;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Parse a head from `bytes`, delivered `step` bytes per read: the head
/// and every byte after it (read into the buffer or not yet read).
fn read(bytes: &[u8], step: usize, asked: &Asked<'_>) -> Result<(Head, Vec<u8>), HttpError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut socket = Pieces {
        data: bytes.to_vec(),
        at: 0,
        step,
    };
    let mut buf = BytesMut::new();
    let head = rt.block_on(read_head(&mut socket, &mut buf, asked))?;
    let mut rest = buf.to_vec();
    rest.extend_from_slice(&socket.data[socket.at..]);
    Ok((head, rest))
}

#[test]
fn interim_heads_are_skipped_and_the_body_start_is_kept() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhel";
    for step in [1, 7, input.len()] {
        let (head, rest) = read(input, step, &asked()).expect("a valid response");
        assert_eq!(head.status, 200);
        assert_eq!(head.body, BodyFraming::Length(5));
        assert!(head.reusable);
        assert_eq!(rest, b"hel", "step {step}");
        let text = String::from_utf8(head.client_head).expect("ascii");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nx-a: b\r\nContent-Length: 5\r\n\r\n"
        );
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let framing = |input: &[u8], asked: &Asked<'_>| {
        read(input, input.len(), asked).map(|(h, _)| (h.body, h.delimit, h.reusable))
    };
    let head_req = Asked {
        head_request: true,
        ..asked()
    };
    let http10 = Asked {
        client_minor: 0,
        ..asked()
    };
    use BodyFraming as B;
    for (input, asked, want) in [
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            &asked(),
            (B::Chunked, Delimit::Chunked, true),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            &asked(),
            (B::Close, Delimit::Chunked, false),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            &http10,
            (B::Close, Delimit::Close, false),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &head_req,
            (B::None, Delimit::None, true),
        ),
        (
            b"HTTP/1.1 204 No Content\r\n\r\n",
            &asked(),
            (B::None, Delimit::None, true),
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            &asked(),
            (B::None, Delimit::None, true),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            &asked(),
            (B::Length(3), Delimit::Length(3), false),
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
            &asked(),
            (B::Length(3), Delimit::Length(3), false),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            &asked(),
            (B::Length(3), Delimit::Length(3), true),
        ),
    ] {
        assert_eq!(
            framing(input, asked).expect("valid"),
            want,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn responses_two_parsers_would_read_differently_are_refused() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
    ] {
        let r = read(bad, bad.len(), &asked());
        assert!(
            matches!(r, Err(HttpError::UpstreamBadResponse)),
            "{}: {:?}",
            String::from_utf8_lossy(bad),
            r.map(|(h, _)| h.status)
        );
    }
}

#[test]
fn a_head_over_the_bound_is_refused_and_eof_before_a_byte_is_stale() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() <= MAX_RESPONSE_HEAD {
        big.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let r = read(&big, 4096, &asked());
    assert!(matches!(r, Err(HttpError::UpstreamBadResponse)));
    assert!(matches!(read(b"", 1, &asked()), Err(HttpError::Stale)));
    assert!(matches!(
        read(b"HTTP/1.1 200", 4, &asked()),
        Err(HttpError::UpstreamBadResponse)
    ));
}

/// The body of `input` in `framing`, fed `step` bytes at a time: the
/// pieces' bytes and whether the body ended.
fn body(framing: BodyFraming, input: &[u8], step: usize) -> Result<(Vec<u8>, bool), HttpError> {
    let mut reader = BodyReader::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match reader.take(&mut buf)? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::Done => return Ok((out, true)),
            Step::More if fed == input.len() => {
                reader.at_eof()?;
                return Ok((out, reader.is_done()));
            }
            Step::More => {
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn bodies_in_every_framing_at_every_split() {
    let chunked = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for step in 1..chunked.len() {
        let (data, done) = body(BodyFraming::Chunked, chunked, step).expect("valid");
        assert_eq!(data, b"hello world", "step {step}");
        assert!(done);
        let (data, done) = body(BodyFraming::Length(5), b"hello", step).expect("valid");
        assert_eq!((&data[..], done), (&b"hello"[..], true));
        let (data, done) = body(BodyFraming::Close, b"until close", step).expect("valid");
        assert_eq!((&data[..], done), (&b"until close"[..], true));
    }
    assert_eq!(
        body(BodyFraming::None, b"", 1).expect("valid"),
        (vec![], true)
    );
}

#[test]
fn truncated_or_badly_framed_bodies_are_errors() {
    assert!(body(BodyFraming::Length(10), b"short", 3).is_err());
    assert!(body(BodyFraming::Chunked, b"5\r\nhel", 3).is_err());
    assert!(body(BodyFraming::Chunked, b"5\r\nhelloXX0\r\n\r\n", 3).is_err());
    assert!(body(BodyFraming::Chunked, b"zz\r\n", 3).is_err());
}
