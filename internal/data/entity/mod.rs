//! sea-orm entities, one per table of `migrations/`.

pub mod image;
pub mod stream_ticket;
pub mod tus_upload;
pub mod upload_session;
pub mod webhook_outbox;
