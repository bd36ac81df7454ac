//! `POST /v1/api/upload-sessions/{identifier}/stream-ticket`: the owner trades its credentials
//! (dev `member_id`, or the JWT in `Authorization`) for a single-use ticket the SSE route
//! accepts as `ticket=`, so no JWT ever goes into a URL. The phone trades its upload token the
//! same way (an extension of SPEC.md, which names the owner only), so the token stays out of
//! URLs too.

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    QueryArgs,
    extract::{OptionalJsonBytes, PathArgs},
};
use crate::service::{
    Services,
    dto::rfc3339,
    error::{ApiError, ApiResult},
};

/// A single-use stream ticket for `GET /v1/api/sse/events?ticket=`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Ticket {
    ticket: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// No body, `null` or a JSON object (`{}`; other fields are ignored) → 201 `{"ticket","expires_at"}`.
pub async fn create(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    OptionalJsonBytes(body): OptionalJsonBytes,
) -> ApiResult<Response> {
    if let Some(body) = body {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::invalid("body", "the body must be a JSON object"))?;
        // `null` says "no body" as well as an empty one does.
        if !value.is_object() && !value.is_null() {
            return Err(ApiError::invalid("body", "the body must be a JSON object"));
        }
    }
    let args = QueryArgs::parse(query.as_deref())?;
    let (caller, expires_at) = services
        .auth
        .ticket_holder(&headers, args.get("member_id"))?;
    let (ticket, expires_at) = services
        .tickets
        .issue(&caller, expires_at.map(DateTime::<Utc>::from), &identifier)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(Ticket {
            ticket,
            expires_at: rfc3339(expires_at),
        }),
    )
        .into_response())
}
