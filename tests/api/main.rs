//! Black-box tests: each starts the whole app on port 0 (SQLite and blobs in a temp dir) and
//! talks HTTP, SSE and gRPC to it like a real client.

mod cdp;
mod helpers;

mod browser;
mod errors;
mod faults;
mod grpc;
mod hostile;
mod hub;
mod lifecycle;
mod photos;
mod scale;
mod security;
mod server;
mod sse;
mod upload;
