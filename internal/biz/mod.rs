//! biz: the domain of qrupload — upload sessions, images and the usecase that ties them together.
//!
//! Rules of this layer:
//! - It owns the traits it needs from the outside world ([`SessionRepo`], [`BlobStore`],
//!   [`EventBus`], [`StreamTicketRepo`]); `data` implements them, `app` injects them as `Arc<dyn Trait>`.
//! - It imports no transport or database crate (no web framework, gRPC stack or ORM). Errors leave it as
//!   [`BizError`], which each edge maps once to an HTTP or gRPC status.
//! - Every change of a session goes through the usecase, which bumps the session's version in
//!   the same write and then rings the bus once. The bus is only a doorbell: the database is
//!   the truth, and watchers re-read it.

mod error;
pub mod imaging;
mod model;
mod ports;
pub mod progress;
mod secret;
mod ticket;
mod tus;
mod usecase;
mod webhook;
mod webhook_policy;

pub use error::{BizError, Result};
pub use model::{
    EventName, Image, NewImage, NewSession, SessionChange, SessionStatus, UnsafeEventName,
    UploadSession, is_well_formed_id,
};
pub use ports::{
    AddImagesOutcome, BlobStore, BusInterest, BusMessage, BusSubscription, EventBus,
    ReorderOutcome, SessionRepo,
};
pub use progress::{ProgressReporter, UploadProgress};
pub use secret::{UploadTokenKey, hash_token, new_id, new_ticket, new_token_key};
pub use ticket::{NewStreamTicket, StreamGrant, StreamTicketRepo, StreamTickets};
pub use tus::{
    CHUNK as TUS_CHUNK, Checksum, ChecksumAlgorithm, PatchOutcome, TusRepo, TusUpload, TusUsecase,
    TusWrite,
};
pub use usecase::{
    Caller, FileLimit, ImageUsecase, PendingUpload, UploadFile, UploadLimits, UploadTimings,
};
pub use webhook::{
    EventType, OutboxStats, PendingDelivery, WebhookEvent, WebhookOutbox, WebhookRoutes,
};
pub use webhook_policy::{AfterFailure, RetryPolicy, is_public_ip};
