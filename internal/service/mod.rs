//! service: the transport edges — gRPC (proto ↔ biz) and HTTP (REST, SSE, upload, pages).
//!
//! Rules of this layer:
//! - Handlers parse and validate input, call one usecase method and map the answer; they hold
//!   no business rule of their own.
//! - Errors are mapped once per edge: [`error::ApiError`] turns a [`crate::biz::BizError`]
//!   into SPEC.md's JSON error with its status (every reason one [`error::Reason`]), and
//!   [`grpc::status_from`] into a `tonic::Status`. Internal causes are logged there and never
//!   sent to a client.
//! - Live delivery goes through [`hub::SessionHub`]: one read and one serialization per
//!   change per instance, shared by every watcher.

pub mod auth;
mod doorbells;
pub mod dto;
pub mod error;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod limits;
pub mod progress;
pub mod sse_frame;
pub mod webhook;

use std::{sync::Arc, time::Duration};

use crate::{
    biz::{ImageUsecase, StreamTickets, TusUsecase},
    metrics::Metrics,
};

/// What every handler needs; cloned into axum's state and the gRPC service.
#[derive(Clone)]
pub struct Services {
    pub usecase: Arc<ImageUsecase>,
    /// Single-use credentials for the SSE route (jwt-mode browsers).
    pub tickets: Arc<StreamTickets>,
    /// Resumable (tus) uploads, finished through `usecase`.
    pub tus: Arc<TusUsecase>,
    pub hub: hub::SessionHub,
    pub metrics: Arc<Metrics>,
    /// Who the member of an HTTP request is (dev or jwt mode).
    pub auth: Arc<auth::MemberAuth>,
    pub limits: Arc<limits::AbuseLimits>,
    /// Base of absolute URLs put in QR codes, e.g. `http://192.168.1.20:8000`.
    pub public_base_url: Arc<str>,
    /// How long a gRPC upload stream may stay silent between messages.
    pub stream_idle_timeout: Duration,
    /// `upload.client_max_edge`, told to the phone page through upload-info.
    pub client_max_edge: Option<u32>,
    /// `server.http.server_timing`: uploads answer with their stage times.
    pub server_timing: bool,
}

impl Services {
    /// `{public_base_url}/m/{identifier}#t={token}`: the token rides in the fragment, so it is
    /// never sent in a request line, logged or leaked in a `Referer`.
    pub fn upload_url(&self, identifier: &str, token: &str) -> String {
        format!("{}/m/{identifier}#t={token}", self.public_base_url)
    }
}
