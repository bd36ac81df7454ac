//! `PUT /v1/api/upload-sessions/{identifier}/images/order`: the member (or the phone) puts
//! the session's photos in order; position 1 is the cover.

use axum::{
    Json,
    extract::{RawQuery, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::extract::{JsonBytes, PathArgs};
use crate::service::{
    Services,
    dto::{ImageJson, images_json},
    error::{ApiError, ApiResult},
};

/// More ids than any session may hold is refused before any lookup.
const MAX_IDS: usize = 1000;

/// The session's images in their new order.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Ordered<'a> {
    images: Vec<ImageJson<'a>>,
    /// The session's version after this change, the `id:` of the stream's events for it: a
    /// client that applies this answer can skip older snapshots still on their way.
    version: u64,
}

/// Body `{"image_ids":[…]}`: exactly the session's ids in the new order. Owner (dev
/// `member_id` or jwt bearer) or upload token, as for deleting an image.
pub async fn reorder(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let caller = services.auth.caller(&headers, query.as_deref())?;
    let ids = image_ids(&body)?;
    let (session, images) = services.usecase.reorder(&caller, &identifier, &ids).await?;
    Ok(Json(Ordered {
        images: images_json(&images),
        version: session.version,
    })
    .into_response())
}

/// The body's `image_ids`: a JSON array of strings.
fn image_ids(body: &[u8]) -> ApiResult<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid("body", "the body must be a JSON object"))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    };
    let not_strings = || ApiError::invalid("image_ids", "image_ids must be an array of image ids");
    let list = match object.get("image_ids") {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::invalid("image_ids", "image_ids is required"));
        }
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => return Err(not_strings()),
    };
    if list.len() > MAX_IDS {
        return Err(ApiError::invalid(
            "image_ids",
            "image_ids must list exactly the session's images, each once",
        ));
    }
    list.iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(not_strings))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::image_ids;

    #[test]
    fn bodies() {
        assert_eq!(
            image_ids(br#"{"image_ids":["a","b"]}"#).ok(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(image_ids(br#"{"image_ids":[]}"#).ok(), Some(vec![]));
        for (bad, field) in [
            (&br#"[]"#[..], "body"),
            (b"nope", "body"),
            (br#"{}"#, "image_ids"),
            (br#"{"image_ids":"a,b"}"#, "image_ids"),
            (br#"{"image_ids":[1,2]}"#, "image_ids"),
        ] {
            assert_eq!(image_ids(bad).err().and_then(|e| e.field), Some(field));
        }
    }
}
