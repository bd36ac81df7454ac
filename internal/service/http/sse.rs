//! `GET /v1/api/sse/events`: the seed's route, kept compatible, now pushed instead of polled.
//!
//! Frames are the hub's pre-encoded bytes: for the default event name a change costs each
//! watcher one reference-count increment. The stream ends after the final `session` event of
//! a completed or expired session; a reconnect to a finished session gets `204 No Content`,
//! which tells `EventSource` to stop retrying. In jwt mode the stream also ends when the
//! token expires; the client reconnects with a fresh one.
//!
//! The member proves itself with `member_id` (dev), a bearer JWT (jwt, for clients that can
//! send headers), or `ticket=` (a single-use stream ticket, for `EventSource`), which takes
//! the place of both.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, Version, header},
    response::{IntoResponse, Response},
};
use bytes::{BufMut, Bytes, BytesMut};

use tokio::time::{Instant, Sleep};

use super::{ClientIp, QueryArgs};
use crate::{
    biz::{Caller, EventName},
    service::{
        Services,
        auth::Member,
        error::{ApiError, ApiResult},
        hub::{SessionHub, Snapshot, Watch, WatchEvent},
        limits::StreamSlot,
    },
};

const PING: &[u8] = b": ping\n\n";

pub async fn events(
    State(services): State<Services>,
    RawQuery(query): RawQuery,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    version: Version,
) -> ApiResult<Response> {
    let started = Instant::now();
    let args = QueryArgs::parse(query.as_deref())?;
    // A ticket is spent by any attempt that names it, before anything else is checked, so a
    // failed attempt cannot be retried with it.
    let ticket = match args.get("ticket") {
        Some(ticket) => Some(
            services
                .tickets
                .redeem(ticket, args.get("identifier").unwrap_or_default())
                .await,
        ),
        None => None,
    };
    // Validation as in the seed, in the seed's order (with a ticket or in jwt mode
    // `member_id` is optional).
    let named_member = args.get("member_id").is_some_and(|m| !m.is_empty());
    let claimed = if named_member || (ticket.is_none() && !services.auth.is_jwt()) {
        Some(args.member_id()?)
    } else {
        None
    };
    let identifier = args.required("identifier")?.to_owned();
    let event = EventName::new(args.required("event")?)
        .ok_or_else(|| ApiError::invalid("event", "event must match [A-Za-z0-9_.:-]{1,64}"))?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| args.get("last_event_id"))
        .and_then(|v| v.trim().parse::<u64>().ok());

    let member = match ticket {
        Some(grant) => {
            let grant = grant?;
            if claimed.is_some_and(|id| id != grant.member_id) {
                return Err(ApiError::not_found());
            }
            Member {
                id: grant.member_id,
                expires_at: grant.member_expires_at.map(SystemTime::from),
            }
        }
        None => services.auth.member(&headers, args.get("member_id"))?,
    };

    let (watch, current) = services.hub.watch(&identifier).await?;
    services
        .usecase
        .authorize(&Caller::Member(member.id), &current.session)?;
    if current.session.status.is_finished() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let slot = services.limits.open_stream(member.id, ip)?;

    let event = WatcherEvent::new(&services.hub, event);
    // Resume: a client that already has the current version gets nothing until the next change.
    let first = (last_event_id != Some(current.version())).then(|| event.frames(&current));
    let stream = WatcherStream {
        watch,
        event,
        last_version: current.version(),
        connecting: first.is_some().then_some(started),
        pending: first,
        finished: false,
        expires: member
            .expires_at
            .map(|at| Box::pin(tokio::time::sleep_until(instant_of(at)))),
        _slot: slot,
    };
    let mut response = Response::new(Body::from_stream(futures::stream::unfold(
        stream,
        WatcherStream::next,
    )));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if version == Version::HTTP_11 {
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    Ok(response)
}

/// The snapshot event's name for this watcher; the default one uses the hub's shared frames.
struct WatcherEvent {
    name: Option<EventName>,
    hub: SessionHub,
}

impl WatcherEvent {
    fn new(hub: &SessionHub, name: EventName) -> Self {
        let custom = name != hub.sse_format().default_event;
        WatcherEvent {
            name: custom.then_some(name),
            hub: hub.clone(),
        }
    }

    /// The `session` event and then the snapshot event, both with `id:` = version.
    fn frames(&self, snapshot: &Snapshot) -> Bytes {
        let Some(name) = &self.name else {
            return snapshot.sse_frames.clone();
        };
        let mut out = BytesMut::with_capacity(
            snapshot.sse_session_frame.len() + snapshot.images_json.len() + 128,
        );
        out.put_slice(&snapshot.sse_session_frame);
        self.hub.sse_format().encode_snapshot(
            &mut out,
            snapshot.version(),
            name,
            &snapshot.images_json,
        );
        out.freeze()
    }
}

/// A `SystemTime` on tokio's clock (a time already past is now).
fn instant_of(at: SystemTime) -> Instant {
    let left = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

struct WatcherStream {
    watch: Watch,
    event: WatcherEvent,
    last_version: u64,
    pending: Option<Bytes>,
    /// When the request came, until its first frames are handed over (`qrupload_sse_connect_seconds`);
    /// none for a resumed stream, whose first frames wait for the next change.
    connecting: Option<Instant>,
    finished: bool,
    /// When the member's token expires (jwt mode); the stream ends then.
    expires: Option<Pin<Box<Sleep>>>,
    /// This stream's place in the per-member and per-address counts.
    _slot: StreamSlot,
}

impl WatcherStream {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(frame) = self.pending.take() {
            self.watch.metrics().events_sent(1);
            if let Some(started) = self.connecting.take() {
                self.watch.metrics().sse_connected(started.elapsed());
            }
            return Some((Ok(frame), self));
        }
        if self.finished {
            return None;
        }
        loop {
            let event = match &mut self.expires {
                Some(expires) => tokio::select! {
                    event = self.watch.next() => event,
                    () = expires.as_mut() => return None,
                },
                None => self.watch.next().await,
            };
            match event {
                WatchEvent::Changed(snapshot) => {
                    if let Some(frame) = self.on_change(&snapshot) {
                        self.watch.metrics().events_sent(1);
                        return Some((Ok(frame), self));
                    }
                }
                WatchEvent::Progress(frame) => {
                    self.watch.metrics().events_sent(1);
                    return Some((Ok(frame.sse.clone()), self));
                }
                WatchEvent::Heartbeat => return Some((Ok(Bytes::from_static(PING)), self)),
                WatchEvent::Closing => return None,
            }
        }
    }

    fn on_change(&mut self, snapshot: &Arc<Snapshot>) -> Option<Bytes> {
        if snapshot.version() <= self.last_version {
            return None;
        }
        self.last_version = snapshot.version();
        self.finished = snapshot.session.status.is_finished();
        Some(self.event.frames(snapshot))
    }
}
