//! Phase: dispatch. Where an admitted client goes: the passthrough relay
//! (one upstream WebSocket connection of its own) or a mux session (an OPEN
//! on one of the route's pooled connections). [`connect`] sets up the
//! upstream side before the client hears anything, so a refusal there is
//! still an HTTP response; [`switch`] sends the 101 and spawns the session
//! as its own small task.

mod subscribe;

use super::{Admitted, ConnectionSlot, Ctx, RouteRuntime};
use crate::access;
use crate::handshake::{accept_key, Refused, Rejection, Upgrade};
use crate::io::Io;
use crate::mux::conn::Out;
use crate::mux::open::Opened;
use crate::mux::session::{Edge, MuxSession};
use crate::mux::stored::StoredOpen;
use crate::mux::MuxRoute;
use crate::relay::Session;
use crate::upstream::{switching_protocols, Affinity, Connected, UpstreamRequest};
use std::sync::Arc;
use std::time::Duration;
use subscribe::{passthrough_subscriber, take_subscribe_header};
use tidegate_mux::{Close, Frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};

/// The upstream side of a session, ready for the client's 101.
pub(super) enum Target {
    Passthrough(Connected),
    Mux {
        route: Arc<MuxRoute>,
        opened: Opened,
        /// The OPEN in compact form, sent again if the session resumes.
        stored: StoredOpen,
    },
}

/// Set up the upstream side: the request is built once, as data, and
/// either serialised for a passthrough endpoint or turned into an OPEN.
pub(super) async fn connect(cx: &Ctx, a: &Admitted) -> Result<Target, Refused> {
    let rt = cx.runtime(&a.upgrade);
    let request = UpstreamRequest::new(
        &a.head,
        &a.upgrade,
        &rt.upstream.config,
        cx.client,
        a.identity.as_ref(),
    );
    // The path as the upstream gets it (normalised, after `strip_prefix`),
    // as the HTTP proxy hashes it: a polling request and its upgrade agree.
    let path = request.path.clone();
    let affinity = Affinity {
        client: cx.client.addr.ip(),
        path: &path,
        query: a.head.query(),
        headers: &a.head,
    };
    let connected = match &rt.mux {
        Some(mux) => open_mux(cx, mux, request, a, &affinity).await,
        None => connect_passthrough(rt, &request, &a.upgrade, &affinity).await,
    };
    connected.map_err(|r| Refused::on(&a.upgrade.route, r))
}

/// Passthrough: connect an endpoint and complete the upstream handshake.
async fn connect_passthrough(
    rt: &RouteRuntime,
    request: &UpstreamRequest,
    upgrade: &Upgrade,
    affinity: &Affinity<'_>,
) -> Result<Target, Rejection> {
    let upstream = &rt.upstream;
    let build = |ep: &_| request.to_http(upgrade, &upstream.config, ep);
    let offer = (
        upgrade.key.as_str(),
        (&upgrade.protocols[..], &request.deflate_offers[..]),
    );
    match upstream
        .connect(affinity, offer, &request.path, build)
        .await
    {
        Ok(c) => Ok(Target::Passthrough(c)),
        Err(e) => {
            tracing::info!(route = %rt.config.name, error = %e, "upstream handshake failed");
            Err(e.rejection())
        }
    }
}

/// Mux: send the OPEN and wait for ACCEPT or REJECT.
async fn open_mux(
    cx: &Ctx,
    mux: &Arc<MuxRoute>,
    request: UpstreamRequest,
    a: &Admitted,
    affinity: &Affinity<'_>,
) -> Result<Target, Rejection> {
    let open = request.into_open(&a.upgrade, cx.client, a.identity.as_ref());
    let body = Frame::open(1, false, &open).body;
    let stored = StoredOpen::new(&open);
    drop(open);
    let deadline = Instant::now() + mux.open_timeout;
    let rt = cx.runtime(&a.upgrade);
    let claim = rt.config.fanout.channels_claim.is_some();
    let access = crate::fanout::Access::for_session(&rt.fanout, claim, a.identity.as_ref());
    let offered = (&body, &a.upgrade.protocols[..]);
    let opening = crate::mux::open::open(&mux.pool, offered, affinity, deadline, access);
    // Boxed: only mux routes take this branch.
    match Box::pin(opening).await {
        Ok(mut opened) => {
            if let Some(cookie) = mux.pool.upstream.affinity_cookie(affinity, opened.endpoint) {
                opened.accept.headers.push(("Set-Cookie".into(), cookie));
            }
            Ok(Target::Mux {
                route: Arc::clone(mux),
                opened,
                stored,
            })
        }
        Err(rejection) => {
            let m = &mux.mux_metrics;
            match &rejection {
                Rejection::UpstreamStatus { .. } => m.rejected.inc(),
                Rejection::UpstreamTimeout => m.open_timeout.inc(),
                _ => {}
            }
            Err(rejection)
        }
    }
}

/// Send the client its 101 and hand both sides to a session task.
pub(super) async fn switch(
    cx: &Ctx,
    io: Io,
    a: Admitted,
    target: Target,
    held: (OwnedSemaphorePermit, ConnectionSlot),
) {
    match target {
        Target::Passthrough(up) => switch_passthrough(cx, io, a, up, held).await,
        Target::Mux {
            route,
            opened,
            stored,
        } => switch_mux(cx, io, a, (route, opened, stored), held).await,
    }
}

/// Passthrough: the 101 with the upstream's choices, then the zero-copy
/// relay, or the frame-decoding relay of edge compression.
async fn switch_passthrough(
    cx: &Ctx,
    mut io: Io,
    a: Admitted,
    mut up: Connected,
    held: (OwnedSemaphorePermit, ConnectionSlot),
) {
    let rt = cx.runtime(&a.upgrade);
    let edge = edge_deflate(cx, rt, &a);
    // The upstream's subscriptions are for the gateway, never the client.
    let channels = take_subscribe_header(&mut up.headers);
    let deflate = up.deflate.as_ref().or(edge.as_ref().map(|(p, _)| p));
    let accept = accept_key(&a.upgrade.key);
    let response = switching_protocols(&accept, (up.protocol.as_deref(), deflate), &up.headers);
    if !send_101(&mut io, &response, cx.state.config.limits.handshake_timeout).await {
        return;
    }
    upgraded(cx, rt);
    let access = access::Record::start(
        rt.config.access_sample,
        cx.client.addr,
        subject(&a),
        &rt.upstream.config.endpoints[up.endpoint].url,
    );
    if let (Some((params, reservation)), crate::config::DeflateMode::Edge(config)) =
        (edge, &rt.config.deflate)
    {
        // Edge compression: its own frame-decoding relay.
        let session = crate::deflate::session::EdgeSession {
            params,
            config: Arc::clone(config),
            settings: Arc::clone(&rt.settings),
            metrics: Arc::clone(&rt.metrics),
            reservation,
            expires_at: a.identity.as_ref().and_then(|i| i.deadline()),
            access,
            feed: passthrough_subscriber(cx, rt, &a, &channels),
        };
        return spawn_edge_relay(cx, session, (io, up), a, held);
    }
    spawn_relay(cx, rt, (io, up), a, &channels, access, held);
}

/// Spawn the edge-compression relay of a passthrough session.
fn spawn_edge_relay(
    cx: &Ctx,
    session: crate::deflate::session::EdgeSession,
    (io, up): (Io, Connected),
    a: Admitted,
    (permit, slot): (OwnedSemaphorePermit, ConnectionSlot),
) {
    let shutdown = &cx.gw.shutdown;
    let draining = shutdown.draining().clone();
    let run = session.run((io, up.io), (a.from_client, up.leftover), draining);
    // `least_connections`: counted on its endpoint until it ends.
    let active = up.active;
    let task = async move {
        run.await;
        drop((permit, active));
    };
    spawn_holding(shutdown, task, slot);
}

/// Spawn the zero-copy relay of a passthrough session, with its fan-out
/// subscriber when it has channels.
fn spawn_relay(
    cx: &Ctx,
    rt: &RouteRuntime,
    (io, up): (Io, Connected),
    a: Admitted,
    channels: &[String],
    access: Option<Box<access::Record>>,
    (permit, slot): (OwnedSemaphorePermit, ConnectionSlot),
) {
    let shutdown = &cx.gw.shutdown;
    if up.deflate.is_some() {
        rt.metrics.deflate_passthrough.inc();
    }
    let session = Session::new(
        (io, up.io),
        &a.from_client,
        &up.leftover,
        up.deflate.is_some(),
        Arc::clone(&rt.settings),
        Arc::clone(&rt.metrics),
    )
    .expire_at(a.identity.as_ref().and_then(|i| i.deadline()))
    .log_access(access)
    .fanout(passthrough_subscriber(cx, rt, &a, channels));
    let run = session.run(shutdown.signal(), permit);
    match up.active {
        // Spawned as is: the relay task is exactly the `Running` future.
        None => spawn_holding(shutdown, run, slot),
        // `least_connections`: the session counts on its endpoint until it
        // ends.
        Some(active) => spawn_holding(
            shutdown,
            async move {
                let _ = run.await;
                drop(active);
            },
            slot,
        ),
    }
}

/// Mux: the 101 with the application's ACCEPT, then the session task; a
/// client gone before its 101 is closed on the mux connection.
async fn switch_mux(
    cx: &Ctx,
    mut io: Io,
    a: Admitted,
    (route, opened, stored): (Arc<MuxRoute>, Opened, StoredOpen),
    (permit, slot): (OwnedSemaphorePermit, ConnectionSlot),
) {
    let rt = cx.runtime(&a.upgrade);
    let accept = accept_key(&a.upgrade.key);
    let shutdown = &cx.gw.shutdown;
    let mut opened = opened;
    let channels = take_subscribe_header(&mut opened.accept.headers);
    let accepted = &opened.accept;
    // The mux protocol carries plain messages: compression, when the
    // route has it, ends here.
    let edge = edge_deflate(cx, rt, &a);
    let response = switching_protocols(
        &accept,
        (accepted.protocol.as_deref(), edge.as_ref().map(|(p, _)| p)),
        &accepted.headers,
    );
    if !send_101(&mut io, &response, cx.state.config.limits.handshake_timeout).await {
        let gone = Close::new(1006, "client gone before the 101");
        opened
            .conn
            .send(Out::frame(&Frame::close(opened.id, &gone)));
        opened.conn.forget(opened.id);
        opened.inbox.end_fanout();
        return;
    }
    route.mux_metrics.opened.inc();
    let hub = &cx.gw.hub;
    opened.inbox.subscribe_granted(hub, opened.id);
    for channel in &channels {
        let _ = opened.inbox.subscribe(hub, opened.id, channel.as_bytes());
    }
    upgraded(cx, rt);
    let draining = shutdown.draining().clone();
    let access = access::Record::start(
        rt.config.access_sample,
        cx.client.addr,
        subject(&a),
        &opened.conn.endpoint,
    );
    let compress = match (edge, &rt.config.deflate) {
        (Some((params, reservation)), crate::config::DeflateMode::Edge(config)) => {
            Some(Box::new(Edge::new(&params, config, reservation)))
        }
        _ => None,
    };
    let session = MuxSession::new(io, opened, stored, route, draining)
        .compress(compress)
        .preload(&a.from_client)
        .expire_at(a.identity.as_ref().and_then(|i| i.deadline()))
        .log_access(access);
    spawn_holding(shutdown, session.run(permit), slot);
}

/// Edge permessage-deflate: the gateway's answer to the client's offer
/// and the memory it reserves, when the route compresses at the edge.
fn edge_deflate(
    cx: &Ctx,
    rt: &RouteRuntime,
    a: &Admitted,
) -> Option<(crate::deflate::Params, crate::deflate::edge::Reservation)> {
    let crate::config::DeflateMode::Edge(config) = &rt.config.deflate else {
        return None;
    };
    let offers = crate::deflate::params::client_offers(a.head.all("sec-websocket-extensions"));
    crate::deflate::session::negotiate(config, &offers, &cx.gw.deflate_budget, &rt.metrics)
}

/// The authenticated subject, for the access log.
fn subject(a: &Admitted) -> Option<&str> {
    a.identity.as_ref()?.subject.as_deref()
}

/// Spawn a session; a tracked per-address slot lives exactly as long.
fn spawn_holding<F>(shutdown: &crate::shutdown::Shutdown, session: F, slot: ConnectionSlot)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if slot.is_tracked() {
        shutdown.spawn(async move {
            let _ = session.await;
            drop(slot);
        });
    } else {
        shutdown.spawn(session);
    }
}

/// Count a completed upgrade and its handshake time.
fn upgraded(cx: &Ctx, rt: &RouteRuntime) {
    rt.metrics.upgraded.inc();
    rt.metrics
        .handshake
        .observe(cx.accepted.elapsed().as_secs_f64());
    tracing::debug!(route = %rt.config.name, "upgraded");
}

/// Write the 101; false if the client is gone or too slow to take it.
async fn send_101(io: &mut Io, response: &[u8], limit: Duration) -> bool {
    let sent = timeout_at(Instant::now() + limit, async {
        io.write_all(response).await?;
        io.flush().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}
