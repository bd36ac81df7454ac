//! tus 1.0 over HTTP: `OPTIONS`/`POST …/tus/` and `HEAD`/`PATCH`/`DELETE …/tus/{upload_id}`,
//! with the extensions creation, creation-with-upload, termination, expiration and checksum.
//!
//! This module maps headers to [`TusUsecase`] calls and back; the protocol's rules about
//! offsets, parts and refusals live in biz. Every answer carries `Tus-Resumable`, and a request
//! other than `OPTIONS` that does not speak 1.0.0 gets 412 ([`tus_protocol`]). A PATCH body is
//! read by a task of its own, so that a client that vanishes mid-body cannot cancel the
//! request before the bytes that did arrive are saved.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use futures::StreamExt;
use std::time::Instant;

use super::{ClientIp, extract::PathArgs};
use crate::{
    biz::{BizError, Checksum, ChecksumAlgorithm, PatchOutcome, TusUpload, TusWrite},
    metrics::UploadKind,
    service::{
        Services,
        auth::upload_token,
        error::{ApiError, ApiResult, Reason},
    },
};

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
pub const TUS_CHECKSUMS: &str = "sha1,sha256";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// Request headers a browser client sends and response headers it must be able to read.
pub const REQUEST_HEADERS: [&str; 8] = [
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "upload-defer-length",
    "x-requested-with",
    "x-http-method-override",
];
pub const RESPONSE_HEADERS: [&str; 10] = [
    "location",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
];

/// A `POST` with `X-HTTP-Method-Override: PATCH|DELETE|HEAD` is that method (tus, for clients
/// behind proxies that pass only GET and POST). Must run before routing picks a handler.
pub async fn method_override(mut request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let method = match request.headers().get("x-http-method-override") {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"PATCH") => Some(Method::PATCH),
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"DELETE") => Some(Method::DELETE),
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"HEAD") => Some(Method::HEAD),
            _ => None,
        };
        if let Some(method) = method {
            *request.method_mut() = method;
        }
    }
    next.run(request).await
}

/// `Tus-Resumable` on every answer; 412 for a request in another version (or none) that
/// carries credentials, 401 for one without. `methods` are the route's tus methods.
pub async fn tus_protocol(
    axum::extract::State(methods): axum::extract::State<&'static [Method]>,
    request: Request,
    next: Next,
) -> Response {
    let speaks_1_0 = request
        .headers()
        .get("tus-resumable")
        .is_some_and(|v| v.as_bytes() == TUS_VERSION.as_bytes());
    // Credentials first: a request without any is refused as every upload route refuses it
    // (401), whatever protocol version it speaks.
    let anonymous = !request.headers().contains_key(header::AUTHORIZATION);
    // Methods this route does not serve pass through to the router's 405.
    let tus_method = methods.contains(request.method());
    let mut response = if !tus_method || speaks_1_0 {
        next.run(request).await
    } else if anonymous {
        ApiError::unauthenticated().into_response()
    } else {
        let mut response = ApiError::new(
            Reason::TusVersionUnsupported,
            "this server speaks tus 1.0.0 only (Tus-Resumable: 1.0.0)",
        )
        .into_response();
        insert(response.headers_mut(), "tus-version", TUS_VERSION);
        response
    };
    insert(response.headers_mut(), "tus-resumable", TUS_VERSION);
    response
}

/// `OPTIONS …/tus/`: what this server supports. Needs no token.
pub async fn options(State(services): State<Services>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    insert(h, "tus-version", TUS_VERSION);
    insert(h, "tus-extension", TUS_EXTENSIONS);
    insert(h, "tus-checksum-algorithm", TUS_CHECKSUMS);
    h.insert("tus-max-size", HeaderValue::from(services.tus.max_size()));
    response
}

/// `POST …/tus/` (creation): `Upload-Length` and optional `Upload-Metadata`; with a body of
/// `application/offset+octet-stream`, the first bytes too (creation-with-upload).
pub(crate) async fn create(
    State(services): State<Services>,
    PathArgs(identifier): PathArgs<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let token = upload_token(&headers)?;
    services.limits.upload_from_ip(ip)?;
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::invalid(
            "Upload-Defer-Length",
            "creation-defer-length is not supported: send Upload-Length",
        ));
    }
    let length = number(&headers, "upload-length", "Upload-Length")?
        .ok_or_else(|| ApiError::invalid("Upload-Length", "Upload-Length is required"))?;
    let metadata = match headers.get("upload-metadata") {
        None => None,
        Some(v) => Some(parse_metadata(v)?),
    };
    let with_upload = content_type_is(&headers, OFFSET_OCTET_STREAM);
    if !with_upload && declared_length(&headers).is_some_and(|n| n > 0) {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            "a creation body must be application/offset+octet-stream",
        ));
    }
    let checksum = checksum(&headers)?;
    services.limits.upload_to_session(&identifier)?;
    let tus = &services.tus;
    // In a task of its own, so that a client leaving mid-creation cannot stop the count
    // between the row and the metric.
    let (upload, new) = {
        let (tus, metrics) = (tus.clone(), services.metrics.clone());
        let (token, identifier) = (token.clone(), identifier.clone());
        tokio::spawn(async move {
            let created = tus.create(&token, &identifier, length, metadata).await;
            if created.as_ref().is_ok_and(|(_, new)| *new) {
                metrics.tus_created();
            }
            created
        })
        .await
        .map_err(|e| ApiError::from(BizError::internal(format!("tus creation task: {e}"))))??
    };
    // A repeated creation (same client_id) answers the upload it made; its body, which starts
    // at byte 0, is not read: the client goes on from the Upload-Offset it is told.
    let upload = if !new {
        upload
    } else {
        if with_upload {
            let write = tus
                .begin_patch(&token, &identifier, &upload.id, 0, checksum)
                .await?;
            receive(&services, write, &headers, body, started).await?
        } else {
            upload
        }
    };
    let mut response = StatusCode::CREATED.into_response();
    let location = format!("/v1/api/upload-sessions/{identifier}/tus/{}", upload.id);
    insert(response.headers_mut(), "location", &location);
    upload_headers(response.headers_mut(), &upload);
    Ok(response)
}

/// `HEAD …/tus/{upload_id}`: where the upload is.
pub(crate) async fn head(
    State(services): State<Services>,
    PathArgs((identifier, upload_id)): PathArgs<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = upload_token(&headers)?;
    let (upload, finished_now) = services.tus.head(&token, &identifier, &upload_id).await?;
    if finished_now {
        services.metrics.tus_finished();
    }
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    upload_headers(h, &upload);
    h.insert("upload-length", HeaderValue::from(upload.length));
    if let Some(metadata) = upload.metadata.as_deref() {
        insert(h, "upload-metadata", metadata);
    }
    insert(h, header::CACHE_CONTROL.as_str(), "no-store");
    Ok(response)
}

/// `PATCH …/tus/{upload_id}`: the next bytes, at `Upload-Offset`.
pub(crate) async fn patch(
    State(services): State<Services>,
    PathArgs((identifier, upload_id)): PathArgs<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let token = upload_token(&headers)?;
    if !content_type_is(&headers, OFFSET_OCTET_STREAM) {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            "a PATCH body must be application/offset+octet-stream",
        ));
    }
    let offset = number(&headers, "upload-offset", "Upload-Offset")?
        .ok_or_else(|| ApiError::invalid("Upload-Offset", "Upload-Offset is required"))?;
    let checksum = checksum(&headers)?;
    let write = services
        .tus
        .begin_patch(&token, &identifier, &upload_id, offset, checksum)
        .await?;
    let upload = receive(&services, write, &headers, body, started).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    upload_headers(response.headers_mut(), &upload);
    Ok(response)
}

/// `DELETE …/tus/{upload_id}` (termination).
pub(crate) async fn terminate(
    State(services): State<Services>,
    PathArgs((identifier, upload_id)): PathArgs<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let token = upload_token(&headers)?;
    services
        .tus
        .terminate(&token, &identifier, &upload_id)
        .await?;
    services.metrics.tus_terminated();
    Ok(StatusCode::NO_CONTENT)
}

/// Feeds the body to the write, in a task of its own (see the module's header). A request
/// that finishes the upload counts its time since `started` as the upload's handling time.
async fn receive(
    services: &Services,
    write: TusWrite,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> ApiResult<TusUpload> {
    let upload = write.upload();
    if let Some(n) = declared_length(headers)
        && upload.offset.saturating_add(n) > upload.length
    {
        return Err(ApiError::from(BizError::PayloadTooLarge(
            "Upload-Offset plus Content-Length is more than Upload-Length".into(),
        )));
    }
    let metrics = services.metrics.clone();
    // Counted in the task: the request may be gone (its client cut) when the file finishes.
    let task = tokio::spawn(async move {
        let outcome = drive(write, body).await?;
        if outcome.finished_now {
            metrics.tus_finished();
            metrics.upload_took(UploadKind::Tus, true, started.elapsed());
        }
        Ok::<_, ApiError>(outcome.upload)
    });
    task.await
        .map_err(|e| ApiError::from(BizError::internal(format!("tus body task: {e}"))))?
}

async fn drive(mut write: TusWrite, body: Body) -> ApiResult<PatchOutcome> {
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(bytes) => write.write(&bytes).await?,
            Err(e) => {
                let offset = write.interrupted().await?;
                return Err(ApiError::invalid(
                    "body",
                    format!("the request body broke off; the upload is at offset {offset}: {e}"),
                ));
            }
        }
    }
    Ok(write.complete().await?)
}

/// `Upload-Offset`, and `Upload-Expires` while the upload is unfinished.
fn upload_headers(h: &mut HeaderMap, upload: &TusUpload) {
    h.insert("upload-offset", HeaderValue::from(upload.offset));
    if !upload.is_finished() {
        let date = upload
            .expires_at
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        insert(h, "upload-expires", &date);
    }
}

fn insert(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), value);
    }
}

fn content_type_is(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A non-negative decimal header, as tus requires for lengths and offsets.
fn number(headers: &HeaderMap, name: &str, field: &'static str) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid(field, format!("{field} must be a non-negative integer")))
}

/// `Upload-Checksum: ALGORITHM BASE64`; an algorithm we do not offer is 400 (tus).
fn checksum(headers: &HeaderMap) -> ApiResult<Option<Checksum>> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            "Upload-Checksum",
            format!(
                "Upload-Checksum must be \"ALGORITHM BASE64\", ALGORITHM one of {TUS_CHECKSUMS}"
            ),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    let (name, digest) = text.trim().split_once(' ').ok_or_else(bad)?;
    let algorithm = ChecksumAlgorithm::parse(name).ok_or_else(bad)?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| bad())?;
    Ok(Some(Checksum { algorithm, digest }))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (value optional), keys unique,
/// without spaces or commas. Kept as sent, once it is known to be well formed.
fn parse_metadata(value: &HeaderValue) -> ApiResult<String> {
    let bad = |why: &str| ApiError::invalid("Upload-Metadata", format!("Upload-Metadata {why}"));
    let text = value.to_str().map_err(|_| bad("must be ASCII"))?;
    let mut keys: Vec<&str> = Vec::new();
    for pair in text.split(',') {
        let pair = pair.trim();
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(bad("has an empty or malformed key"));
        }
        if keys.contains(&key) {
            return Err(bad("names a key twice"));
        }
        keys.push(key);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("has a value that is not base64"))?;
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_are_checked() {
        let ok = HeaderValue::from_static(
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
        );
        assert!(parse_metadata(&ok).is_ok());
        for bad in ["", "a b c", "x !!!", "k dGVzdA==,k dGVzdA=="] {
            assert!(
                parse_metadata(&HeaderValue::from_static(bad)).is_err(),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn checksum_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "upload-checksum",
            HeaderValue::from_static("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
        );
        let Ok(Some(c)) = checksum(&h) else {
            panic!("a sha1 checksum parses")
        };
        assert_eq!(c.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        h.insert("upload-checksum", HeaderValue::from_static("md5 AAAA"));
        assert!(checksum(&h).is_err());
    }
}
