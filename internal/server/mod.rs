//! server: the listeners. Builds the axum router and the tonic server around the service
//! layer, adds the cross-cutting middleware (tracing with W3C `traceparent`, panics → 500,
//! JSON errors for unknown routes, request body deadlines) and serves until told to stop. The
//! HTTP side has its own serve loop (head and idle timeouts, slow clients dropped, SSE streams
//! written without hyper's per-connection buffers).
//!
//! Rules of this layer: servers take an already-bound listener (port 0 in tests) and a
//! shutdown future; they hold no business logic.

mod grpc;
mod http;
pub mod trace;

pub use grpc::serve_grpc;
pub use http::{HttpTimeouts, router, serve_http};
