//! qrupload: upload photos from a phone to a desktop page by scanning a QR code, pushed live
//! over Server-Sent Events; the same image usecase for internal services over gRPC.
//!
//! The layers, kratos-style, data flowing one way (transport → service → biz ← data):
//!
//! - [`api`]: the code generated from `proto/` (`api::image::v1`), shared by service and tests.
//! - [`conf`]: typed configuration and its layered loader.
//! - [`biz`]: domain types, the [`biz::ImageUsecase`], and the traits it needs
//!   ([`biz::SessionRepo`], [`biz::BlobStore`], [`biz::EventBus`]). No transport or database crate.
//! - [`data`]: sea-orm repositories, blob stores and event buses implementing biz's traits.
//! - [`service`]: gRPC and HTTP handlers mapping requests to usecase calls; the live
//!   [`service::hub::SessionHub`].
//! - [`server`]: the axum and tonic servers, middleware and listeners.
//! - [`web`]: the desktop and mobile pages, embedded.
//! - [`app`]: the composition root that wires all of the above by hand.

pub mod api;
pub mod app;
pub mod biz;
pub mod conf;
pub mod data;
pub mod metrics;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod web;

pub use app::Application;
