//! Black-box tests: each starts the whole app on port 0 (SQLite and blobs in a temp dir) and
//! talks HTTP, SSE and gRPC to it like a real client.

mod cdp;
mod helpers;

mod browser;
mod browser_tus;
mod bus;
mod errors;
mod faults;
mod grpc;
mod hostile;
mod hub;
mod languages;
mod lifecycle;
mod metrics;
mod openapi;
mod order;
mod phone_live;
mod photos;
mod progress;
mod relay;
mod scale;
mod security;
mod server;
mod sse;
mod tickets;
mod traces;
mod tus;
mod tus_backends;
mod tus_js;
mod upload;
mod webhooks;
mod widget_browser;
