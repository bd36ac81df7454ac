//! The real HTTP upload handler fed arbitrary multipart bodies.
//!
//! The whole app is built once, as `qrupload serve` builds it (`Application::build`: SQLite in
//! memory, blobs in a temporary folder, the in-process bus), with small limits so that quotas
//! are reached within a few requests. Each input becomes one
//! `POST /v1/api/upload-sessions/{id}/images` sent through the router with
//! `tower::ServiceExt::oneshot`, no socket involved.
//!
//! An input is either raw (first byte < 0x80): that byte picks the headers and how the body
//! is streamed, and the rest is the body verbatim, its boundary read from its first line; or
//! structured (first byte >= 0x80): the rest is decoded with `arbitrary` into headers, a list
//! of parts (name, filename, headers, content: bytes or a real image, possibly damaged), raw
//! edits of the assembled body, and chunk sizes.
//!
//! Invariants:
//! - never a 5xx: not 500, and not even 503 `UNAVAILABLE`, since every backend here is local
//!   and healthy;
//! - every refusal is SPEC.md's JSON error: `code` equal to the status, the `reason` that
//!   belongs to it, a message and a metadata object;
//! - all or nothing: after a refusal the session holds the same images as before; after a 201
//!   it holds the returned images in addition (or, for a replayed `Idempotency-Key`, already);
//! - no blob is left behind: now and then the blob folder is compared with the stored images.

#![no_main]

mod common;

use std::{
    convert::Infallible,
    path::Path,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arbitrary::{Arbitrary, Unstructured};
use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, StatusCode, header},
};
use libfuzzer_sys::fuzz_target;
use qrupload::{
    Application,
    biz::{Caller, UploadSession, imaging::testdata},
    conf::Config,
    service::Services,
};
use serde_json::Value;
use tower::ServiceExt;

const MEMBER: u32 = 7;
const MAX_IMAGES: u32 = 4;
const FALLBACK_BOUNDARY: &str = "qrupload-fuzz-boundary";

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    services: Services,
    dir: tempfile::TempDir,
    /// The session every request goes to: identifier and upload token.
    session: (String, String),
    /// Real images (with metadata to strip) for structured inputs to send or damage.
    images: Vec<Vec<u8>>,
    requests: AtomicU64,
    _app: Application,
    _telemetry: qrupload::telemetry::TelemetryGuard,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("qrupload-fuzz-")
            .tempdir()
            .expect("temp dir");
        remove_on_exit(dir.path());
        let vars = [
            ("SERVER__HTTP__ADDR", "127.0.0.1:0".to_owned()),
            ("SERVER__GRPC__ADDR", "127.0.0.1:0".to_owned()),
            ("SERVER__PUBLIC_BASE_URL", "http://fuzz.invalid".to_owned()),
            ("DATA__DATABASE__URL", "sqlite::memory:".to_owned()),
            (
                "DATA__BLOB__ROOT",
                dir.path().join("blobs").display().to_string(),
            ),
            // Warnings (such as the cause of a 503) go to the run's log.
            ("LOG__LEVEL", "warn".to_owned()),
            ("UPLOAD__SESSION_TTL", "24h".to_owned()),
            ("UPLOAD__MAX_SESSION_TTL", "24h".to_owned()),
            ("UPLOAD__MAX_IMAGES", MAX_IMAGES.to_string()),
            ("UPLOAD__MAX_IMAGE_BYTES", "8KiB".to_owned()),
            ("UPLOAD__MAX_SESSION_BYTES", "16KiB".to_owned()),
            ("UPLOAD__MAX_PIXELS", "4000000".to_owned()),
            ("UPLOAD__THUMBNAIL_SIZE", "16".to_owned()),
            ("UPLOAD__MAX_CONCURRENT_DECODES", "1".to_owned()),
            (
                "AUTH__UPLOAD_TOKEN_KEY",
                "fuzzing-key-fuzzing-key-fuzzing-key".to_owned(),
            ),
            // Thousands of uploads a second to one session: the abuse limits would answer
            // most of them 429 and hide the handler from the fuzzer.
            ("LIMITS__UPLOADS_PER_SESSION_PER_MINUTE", "0".to_owned()),
            ("LIMITS__UPLOADS_PER_IP_PER_MINUTE", "0".to_owned()),
        ]
        .map(|(k, v)| (format!("QRUPLOAD__{k}"), v));
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let config = Config::load_with(&configs, None, vars).expect("config");
        let telemetry =
            qrupload::telemetry::init_with_writer(&config.log, &config.trace, std::io::stderr)
                .expect("telemetry");
        let cors = config.cors.clone();
        let http_limits = qrupload::server::HttpTimeouts::from_config(&config);
        let app = runtime
            .block_on(Application::build(config))
            .expect("app builds");
        let services = app.services().clone();
        let router = qrupload::server::router(services.clone(), &cors, &http_limits);
        let (session, token) = runtime
            .block_on(services.usecase.create_session(MEMBER, None, None))
            .expect("session");
        let images = vec![
            testdata::jpeg_with_exif(48, 32, 6, true),
            testdata::jpeg_with_exif(96, 64, 1, true),
            testdata::small_png(12, 9),
            testdata::small_gif(12, 9),
            testdata::small_webp(12, 9),
        ];
        Harness {
            runtime,
            router,
            services,
            dir,
            session: (session.identifier, token),
            images,
            requests: AtomicU64::new(0),
            _app: app,
            _telemetry: telemetry,
        }
    })
}

/// Statics are never dropped: the temporary folder goes when the process exits normally.
fn remove_on_exit(path: &Path) {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    unsafe extern "C" {
        fn atexit(f: extern "C" fn()) -> i32;
    }
    extern "C" fn remove() {
        if let Some(path) = PATH.get() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    if PATH.set(path.to_owned()).is_ok() {
        // SAFETY: registers a plain function with no arguments, as atexit expects.
        unsafe {
            atexit(remove);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    common::contain_third_party_panics();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    common::count(if flags >= 0x80 { "structured" } else { "raw" });
    let request = if flags >= 0x80 {
        match Structured::arbitrary_take_rest(Unstructured::new(rest)) {
            Ok(structured) => structured.build(&harness().images),
            Err(_) => return,
        }
    } else {
        raw(flags, rest)
    };
    let h = harness();
    h.runtime.block_on(run(h, request));
});

/// One upload request, before it is put on the wire.
struct Upload {
    auth: Auth,
    content_type: ContentType,
    boundary: String,
    idempotency_key: Option<String>,
    unknown_session: bool,
    body: Vec<u8>,
    chunks: Vec<usize>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Auth {
    Valid,
    Missing,
    WrongToken,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum ContentType {
    Multipart,
    MultipartQuoted,
    Missing,
    Raw(String),
}

/// Raw input: `flags` picks the headers and chunking; `body` is sent as it is.
fn raw(flags: u8, body: &[u8]) -> Upload {
    let auth = match flags & 3 {
        2 => Auth::Missing,
        3 => Auth::WrongToken,
        _ => Auth::Valid,
    };
    let content_type = match (flags >> 2) & 3 {
        2 => ContentType::Missing,
        3 => ContentType::Raw("text/plain".into()),
        _ => ContentType::Multipart,
    };
    let chunk = [0, 1, 7, 100][usize::from((flags >> 5) & 3)];
    // The boundary is what the body's first line says it is.
    let boundary = body
        .strip_prefix(b"--")
        .map(|b| {
            let end = b.iter().position(|&c| c == b'\r' || c == b'\n');
            &b[..end.unwrap_or(b.len())]
        })
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|b| !b.is_empty())
        .unwrap_or(FALLBACK_BOUNDARY)
        .to_owned();
    let chunks = if chunk == 0 {
        Vec::new()
    } else {
        vec![chunk; body.len() / chunk]
    };
    Upload {
        auth,
        content_type,
        boundary,
        idempotency_key: (flags & 0x10 != 0).then(|| "key-0".to_owned()),
        unknown_session: false,
        body: body.to_vec(),
        chunks,
    }
}

#[derive(Arbitrary, Debug)]
struct Structured {
    auth: Auth,
    content_type: ContentType,
    /// `None`: a fixed, valid boundary.
    boundary: Option<String>,
    idempotency_key: Option<IdempotencyKey>,
    unknown_session: bool,
    preamble: Vec<u8>,
    parts: Vec<Part>,
    close: bool,
    epilogue: Vec<u8>,
    edits: Vec<Edit>,
    chunks: Vec<u16>,
}

#[derive(Arbitrary, Debug)]
enum IdempotencyKey {
    /// One of a few keys, so that replays happen.
    Few(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Part {
    disposition: Disposition,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    content: Content,
}

#[derive(Arbitrary, Debug)]
enum Disposition {
    File { filename: Option<String> },
    Field { name: String },
    Missing,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Content {
    Bytes(Vec<u8>),
    /// A real image, damaged by `edits` and cut to `cut` bytes.
    Image {
        index: u8,
        edits: Vec<Edit>,
        cut: Option<u16>,
    },
}

#[derive(Arbitrary, Debug)]
struct Edit {
    at: u16,
    op: EditOp,
}

#[derive(Arbitrary, Debug)]
enum EditOp {
    Set(u8),
    Insert(Vec<u8>),
    Remove(u8),
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let at = usize::from(edit.at) % (bytes.len() + 1);
        match &edit.op {
            EditOp::Set(v) => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = *v;
                }
            }
            EditOp::Insert(v) => {
                bytes.splice(at..at, v.iter().copied());
            }
            EditOp::Remove(n) => {
                let end = (at + usize::from(*n)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
}

impl Structured {
    fn build(self, images: &[Vec<u8>]) -> Upload {
        let boundary = self
            .boundary
            .unwrap_or_else(|| FALLBACK_BOUNDARY.to_owned());
        let mut body = self.preamble;
        for part in &self.parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match &part.disposition {
                Disposition::File { filename } => {
                    body.extend_from_slice(b"Content-Disposition: form-data; name=\"file\"");
                    if let Some(f) = filename {
                        body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
                    }
                    body.extend_from_slice(b"\r\n");
                }
                Disposition::Field { name } => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
                ),
                Disposition::Missing => {}
                Disposition::Raw(raw) => {
                    body.extend_from_slice(b"Content-Disposition: ");
                    body.extend_from_slice(raw);
                    body.extend_from_slice(b"\r\n");
                }
            }
            if let Some(ct) = &part.content_type {
                body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            for (name, value) in &part.headers {
                body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            match &part.content {
                Content::Bytes(bytes) => body.extend_from_slice(bytes),
                Content::Image { index, edits, cut } => {
                    let mut image = images[usize::from(*index) % images.len()].clone();
                    apply(&mut image, edits);
                    if let Some(cut) = cut {
                        image.truncate(usize::from(*cut));
                    }
                    body.extend_from_slice(&image);
                }
            }
            body.extend_from_slice(b"\r\n");
        }
        if self.close {
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        body.extend_from_slice(&self.epilogue);
        apply(&mut body, &self.edits);
        Upload {
            auth: self.auth,
            content_type: self.content_type,
            boundary,
            idempotency_key: self.idempotency_key.map(|k| match k {
                IdempotencyKey::Few(n) => format!("key-{}", n % 4),
                IdempotencyKey::Raw(s) => s,
            }),
            unknown_session: self.unknown_session,
            body,
            chunks: self
                .chunks
                .iter()
                .map(|&c| usize::from(c % 512).max(1))
                .collect(),
        }
    }
}

impl Upload {
    /// The request, or `None` if a fuzzed header value cannot be put in a header at all.
    fn request(self, identifier: &str, token: &str) -> Option<Request<Body>> {
        let identifier = if self.unknown_session {
            "AAAAAAAAAAAAAAAAAAAAAA"
        } else {
            identifier
        };
        let mut builder = Request::post(format!("/v1/api/upload-sessions/{identifier}/images"));
        let authorization = match self.auth {
            Auth::Valid => Some(format!("Bearer {token}")),
            Auth::Missing => None,
            Auth::WrongToken => Some("Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
            Auth::Raw(raw) => Some(raw),
        };
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, HeaderValue::try_from(value).ok()?);
        }
        let content_type = match self.content_type {
            ContentType::Multipart => {
                Some(format!("multipart/form-data; boundary={}", self.boundary))
            }
            ContentType::MultipartQuoted => Some(format!(
                "multipart/form-data; boundary=\"{}\"",
                self.boundary
            )),
            ContentType::Missing => None,
            ContentType::Raw(raw) => Some(raw),
        };
        if let Some(value) = content_type {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::try_from(value).ok()?);
        }
        if let Some(key) = self.idempotency_key {
            builder = builder.header("idempotency-key", HeaderValue::try_from(key).ok()?);
        }
        // The body arrives in pieces, as from a network: boundaries may be split anywhere.
        let mut pieces = Vec::new();
        let mut rest = bytes::Bytes::from(self.body);
        for size in self.chunks {
            if rest.is_empty() {
                break;
            }
            pieces.push(rest.split_to(size.min(rest.len())));
        }
        if !rest.is_empty() {
            pieces.push(rest);
        }
        let stream = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
        builder.body(Body::from_stream(stream)).ok()
    }
}

/// The session as stored, and its image ids.
async fn stored(services: &Services, identifier: &str) -> (UploadSession, Vec<String>) {
    let (session, images) = services
        .usecase
        .snapshot(identifier)
        .await
        .expect("snapshot")
        .expect("the session exists");
    assert_eq!(session.image_count as usize, images.len());
    (session, images.into_iter().map(|i| i.id).collect())
}

async fn run(h: &Harness, upload: Upload) {
    let (identifier, token) = (&h.session.0, &h.session.1);
    let services = &h.services;
    let (session, mut before) = stored(services, identifier).await;
    // A full session only answers 429; empty it (deleting its blobs) so uploads go on.
    if session.image_count >= MAX_IMAGES
        || session.max_bytes.saturating_sub(session.total_bytes) < 2048
    {
        for id in &before {
            services
                .usecase
                .delete_image(&Caller::Member(MEMBER), identifier, id)
                .await
                .expect("delete");
        }
        before.clear();
    }

    let replayable = upload.idempotency_key.is_some();
    let Some(request) = upload.request(identifier, token) else {
        return;
    };
    let response = h.router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    common::count(status.as_u16().to_string());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("response body");
    let json: Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(_) => panic!(
            "{status}: body is not JSON: {:?}",
            String::from_utf8_lossy(&body)
        ),
    };
    let (_, after) = stored(services, identifier).await;

    if status == StatusCode::CREATED {
        let images = json["images"].as_array().expect("images array");
        assert!(!images.is_empty(), "201 without images");
        for image in images {
            let id = image["id"].as_str().expect("image id");
            assert!(
                after.iter().any(|a| a == id),
                "returned image {id} not stored"
            );
            assert!(matches!(
                image["content_type"].as_str(),
                Some("image/jpeg" | "image/png" | "image/webp" | "image/gif")
            ));
            assert!(image["width"].as_u64().is_some_and(|w| w > 0));
            assert!(image["height"].as_u64().is_some_and(|w| w > 0));
        }
        let added = after.len() - before.len();
        assert!(
            added == images.len() || (replayable && added == 0),
            "201 with {} images but {added} stored",
            images.len()
        );
        assert!(
            before.iter().all(|b| after.contains(b)),
            "an image vanished"
        );
    } else {
        check_error(status, &json);
        assert_eq!(before, after, "{status} but the session's images changed");
    }
    check_blobs_now_and_then(h, after.len()).await;
}

/// SPEC.md's error JSON, with the reason that belongs to the status.
fn check_error(status: StatusCode, json: &Value) {
    let reasons: &[&str] = match status.as_u16() {
        400 => &["INVALID_ARGUMENT"],
        401 => &["UNAUTHENTICATED"],
        404 => &["NOT_FOUND"],
        409 => &["SESSION_CLOSED"],
        413 => &["PAYLOAD_TOO_LARGE"],
        415 => &["UNSUPPORTED_MEDIA_TYPE"],
        422 => &["UNPROCESSABLE_IMAGE"],
        429 => &["QUOTA_EXCEEDED", "RATE_LIMITED"],
        _ => panic!("unexpected status {status}: {json}"),
    };
    assert_eq!(
        json["code"].as_u64(),
        Some(u64::from(status.as_u16())),
        "{json}"
    );
    let reason = json["reason"].as_str().expect("reason");
    assert!(reasons.contains(&reason), "{status} with reason {reason}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert!(json["metadata"].is_object(), "{json}");
    if status == StatusCode::BAD_REQUEST {
        assert!(json["metadata"]["field"].is_string(), "{json}");
    }
}

/// Every 64 requests: once refused uploads have deleted their blobs (in the background, as
/// `PendingUpload` does when dropped), the folder holds an image and a thumbnail per stored image.
async fn check_blobs_now_and_then(h: &Harness, images: usize) {
    if !(h.requests.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(64) {
        return;
    }
    let root = h.dir.path().join("blobs");
    let mut files = 0;
    for _ in 0..400 {
        files = count_files(&root);
        if files == 2 * images {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{files} blob files for {images} stored images");
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
