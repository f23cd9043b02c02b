//! What an idle HTTP connection costs is mostly its task's future: a held
//! event stream or long-poll keeps the connection loop ([`serve`]) with
//! its exchange suspended in the response body's read for as long as the
//! stream lives, and a future is as large as its largest state. These
//! tests pin the sizes, so a change that grows them (a large state added
//! inline, an argument kept twice) is seen and boxed or slimmed instead.
//!
//! Measured (`tidegate-loadtest sse-idle`, docs/performance.md "HTTP
//! proxying", fourth round): the connection task was the 3.8 KB handshake
//! future holding a boxed 4.7 KB loop; spawning the loop as the task and
//! boxing its rare states brought the task to about 2.7 KB. The task's
//! allocation is this future plus about 100 bytes of tokio's, rounded up
//! to 128 (a task is 128-aligned) and taken from mimalloc's size classes
//! (…, 3,072, 3,584): a few bytes more can cost 512 per idle stream at
//! once. Seventh round (`bench-http-ab.sh`, 2,000 idle streams): the loop
//! at 2,840 bytes crossed (+512 B per stream); at 2,792 it does not.

use super::*;
use crate::http::exchange::Exchange;
use std::mem::size_of;

/// The size of the future `f` returns, without calling it.
fn serve_size<F: Future>(
    _: fn(Ctx, Io, Request, (OwnedSemaphorePermit, ConnectionSlot)) -> F,
) -> usize {
    size_of::<F>()
}

#[allow(clippy::type_complexity)]
fn exchange_size<'a, F: Future + 'a>(
    _: fn(
        &'a Exchange<'a>,
        &'a mut ReadHalf<Io>,
        &'a mut WriteHalf<Io>,
        &'a mut BytesMut,
        &'a mut crate::http::timer::ConnTimer,
    ) -> F,
) -> usize {
    size_of::<F>()
}

#[test]
fn the_connection_task_of_an_idle_stream_stays_small() {
    let serve = serve_size(serve);
    let exchange = exchange_size(Exchange::run::<ReadHalf<Io>, WriteHalf<Io>>);
    println!("HTTP connection future: {serve} bytes, exchange future: {exchange} bytes");
    assert!(
        exchange <= 1820,
        "the exchange future grew to {exchange} bytes: box a state only some requests take"
    );
    assert!(
        serve <= 2800,
        "the HTTP connection future grew to {serve} bytes: box a state only some requests take"
    );
}
