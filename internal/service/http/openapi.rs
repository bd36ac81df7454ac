//! The REST API's OpenAPI 3.1 document, served at `GET /openapi.json` and kept in the repo as
//! `docs/openapi.json`.
//!
//! Bodies are described by the very types the handlers serialize (`ToSchema` on the DTOs), so
//! a field cannot change without the document changing. Each route is declared once below with
//! the statuses its handler and the layers in front of it can give. An answer several routes
//! give in the same words is named once (`SessionClosed`, `WrongToken`, …) and listed by
//! name, as are the parameter sets routes share (`MemberSessionParams`, `TusUploadParams`);
//! the statuses every API route shares (a malformed query, an internal error, an unavailable
//! backend) are added by [`SharedErrors`] rather than written out fifty times. Two tests keep
//! it honest: the committed file must equal what the code generates, and every documented
//! operation must reach a handler of the router (no 404 "unknown route", no 405).

use std::collections::BTreeMap;

use utoipa::{
    IntoParams, IntoResponses, Modify, OpenApi, ToSchema,
    openapi::{
        self, ContentBuilder, KnownFormat, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder,
        SchemaFormat, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::service::dto::{ImageJson, SessionJson};

/// SPEC.md's error body, in the kratos shape. Every 4xx and 5xx of the API has it.
#[derive(ToSchema)]
#[schema(example = json!({"code": 400, "reason": "INVALID_ARGUMENT",
    "message": "member_id is required", "metadata": {"field": "member_id"}}))]
#[allow(dead_code)] // A schema only: `ApiError` writes this shape.
pub struct ErrorJson {
    /// The HTTP status, repeated.
    code: u16,
    /// A stable machine-readable reason, e.g. `NOT_FOUND`, `QUOTA_EXCEEDED`.
    reason: String,
    /// English text for a developer; pages translate by `reason`.
    message: String,
    /// `field` names the offending input when there is one.
    metadata: ErrorMetadata,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorMetadata {
    field: Option<String>,
}

/// `POST /v1/api/upload-sessions`'s body in dev auth (jwt auth takes the member from the token).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateSessionBody {
    /// The member who owns the session (dev auth; jwt auth takes it from the token). 0 is valid.
    #[schema(value_type = u64, minimum = 0, maximum = 4294967295_u64)]
    member_id: u32,
}

/// `PUT …/images/order`'s body: exactly the session's image ids, in the new order.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderBody {
    /// Every image id of the session once; the first becomes the cover (position 1).
    #[schema(max_items = 1000)]
    image_ids: Vec<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "qrupload",
        description = "Upload photos from a phone to a desktop page by QR code, pushed live over \
            Server-Sent Events. Member routes authenticate with `member_id` (dev auth) or a \
            bearer JWT (jwt auth); phone routes with the upload token from the QR URL's \
            fragment, as a bearer token.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::create_session,
        routes::get_session,
        routes::qr_svg,
        routes::complete_session,
        routes::upload_info,
        routes::upload_images,
        routes::delete_image,
        routes::reorder_images,
        routes::stream_ticket,
        routes::tus_options,
        routes::tus_create,
        routes::tus_head,
        routes::tus_patch,
        routes::tus_terminate,
        routes::image,
        routes::thumbnail,
        routes::sse_events,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi_json,
        routes::widget_js,
        routes::widget_view_js,
    ),
    components(schemas(ErrorJson, ImageJson, SessionJson)),
    modifiers(&SecuritySchemes, &SharedErrors),
    tags(
        (name = "sessions", description = "Upload sessions, for the member's desktop page"),
        (name = "phone", description = "Routes the phone calls with its upload token"),
        (name = "images", description = "Stored images and thumbnails"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as served and committed.
pub fn document() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON, newline-terminated (the committed file's form).
pub fn document_json() -> String {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    absent_not_null(&mut doc);
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"));
    text.push('\n');
    text
}

/// An optional header or query parameter is absent or a string; it cannot be JSON `null`,
/// which is what `Option<T>` says to the generator. Drops `null` from such parameters' types.
fn absent_not_null(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for param in params {
                if let Some(types) = param
                    .pointer_mut("/schema/type")
                    .and_then(|t| t.as_array_mut())
                {
                    types.retain(|t| t != "null");
                    if types.len() == 1 {
                        let only = types[0].clone();
                        if let Some(schema) = param.get_mut("schema") {
                            schema["type"] = only;
                        }
                    }
                }
            }
        }
    }
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "upload_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session's upload token, from the QR URL's fragment (`#t=TOKEN`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "member_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "jwt auth: the host's JWT whose subject is the member. In dev auth the \
                         member is named by `member_id` instead.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Statuses any `/v1/api` route can give whatever its handler does: 400 for a malformed or
/// repeated query parameter or an undecodable path segment, 500 and 503. Added to every
/// operation under `/v1/api` that does not describe them itself (but HEAD, whose answers
/// have no body to describe).
struct SharedErrors;

impl Modify for SharedErrors {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let shared = [
            ("400", "Malformed request (query, path or body)"),
            ("500", "Internal error (no detail is given)"),
            (
                "503",
                "A backend (database, bus, blob store) is unavailable; retry later",
            ),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/api/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for (status, description) in shared {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

fn error_response(description: &str) -> RefOr<openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorJson")))
                    .build(),
            )
            .build(),
    )
}

/// Error answers that several routes give in the same words, each declared once. A route
/// lists them in its `responses(...)` beside the answers that are its own.
macro_rules! shared_answers {
    ($($name:ident = $status:literal, $description:literal;)*) => {$(
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
                BTreeMap::from([($status.to_owned(), error_response($description))])
            }
        }
    )*};
}

shared_answers! {
    NoMemberJwt = "401", "jwt auth: no valid bearer JWT";
    NoUploadToken = "401", "No upload token";
    NoSuchSession = "404", "No such session for this member";
    WrongToken = "404", "Unknown session or wrong token";
    SessionClosed = "409", "The session is closed (`SESSION_CLOSED`)";
    TusVersion = "412", "A `Tus-Resumable` other than 1.0.0";
    JsonTooLarge = "413", "The JSON body is over 64 KiB";
    NotJson = "415", "The body is not `application/json`";
    Undecodable = "422", "An image that no decoder renders";
    ImageQuota = "429", "Image quota (`QUOTA_EXCEEDED`) or upload rate (`RATE_LIMITED`)";
}

/// The parameters of a member's session route: `{identifier}` and dev auth's `member_id`.
pub struct MemberSessionParams;

impl IntoParams for MemberSessionParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let member_id = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(u64::from(u32::MAX)));
        vec![
            identifier_param(),
            param("member_id", ParameterIn::Query, Required::False)
                .description(Some("dev auth: the owner"))
                .schema(Some(member_id))
                .build(),
        ]
    }
}

/// The parameters of a tus upload's route: `{identifier}`, `{upload_id}` and `Tus-Resumable`.
pub struct TusUploadParams;

impl IntoParams for TusUploadParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            identifier_param(),
            param("upload_id", ParameterIn::Path, Required::True)
                .description(Some("The last path segment of `Location`"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
            param("Tus-Resumable", ParameterIn::Header, Required::True)
                .description(Some("The protocol version: `1.0.0` (else 412)"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^1\\.0\\.0$")),
                ))
                .build(),
        ]
    }
}

fn identifier_param() -> Parameter {
    param("identifier", ParameterIn::Path, Required::True)
        .description(Some("The session's identifier"))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn param(name: &str, at: ParameterIn, required: Required) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(at)
        .required(required)
}

/// One declaration per route. The functions are never called: they carry the attributes
/// from which the document is generated, next to each other so the API reads at a glance.
#[allow(dead_code)]
mod routes {
    use super::{
        CreateSessionBody, ErrorJson, ImageQuota, JsonTooLarge, MemberSessionParams, NoMemberJwt,
        NoSuchSession, NoUploadToken, NotJson, OrderBody, SessionClosed, TusUploadParams,
        TusVersion, Undecodable, WrongToken,
    };
    use crate::service::{
        dto::SessionJson,
        http::{order::Ordered, sessions::UploadInfo, tickets::Ticket, upload::Uploaded},
    };

    #[utoipa::path(
        post, path = "/v1/api/upload-sessions", tag = "sessions",
        summary = "Create an upload session",
        request_body(content = CreateSessionBody, content_type = "application/json",
            description = "Required in dev auth; optional (or `{}`) in jwt auth"),
        security((), ("member_jwt" = [])),
        responses(
            (status = 201, description = "The new session, with its upload URL", body = SessionJson),
            NoMemberJwt,
            JsonTooLarge,
            NotJson,
            (status = 429, description = "Too many sessions for this member (`RATE_LIMITED`)", body = ErrorJson,
                headers(("Retry-After" = u64, description = "Seconds to wait"))),
        )
    )]
    fn create_session() {}

    #[utoipa::path(
        get, path = "/v1/api/upload-sessions/{identifier}", tag = "sessions",
        summary = "Read a session",
        params(MemberSessionParams),
        security((), ("member_jwt" = [])),
        responses(
            (status = 200, description = "The session", body = SessionJson),
            NoMemberJwt,
            NoSuchSession,
        )
    )]
    fn get_session() {}

    #[utoipa::path(
        get, path = "/v1/api/upload-sessions/{identifier}/qr.svg", tag = "sessions",
        summary = "The QR code of the session's upload URL",
        params(MemberSessionParams),
        security((), ("member_jwt" = [])),
        responses(
            (status = 200, description = "An SVG image", content_type = "image/svg+xml", body = String),
            NoMemberJwt,
            NoSuchSession,
            SessionClosed,
        )
    )]
    fn qr_svg() {}

    #[utoipa::path(
        post, path = "/v1/api/upload-sessions/{identifier}/complete", tag = "sessions",
        summary = "Close the session for uploads (idempotent)",
        params(MemberSessionParams),
        security((), ("member_jwt" = [])),
        responses(
            (status = 200, description = "The completed session (again, if already completed)", body = SessionJson),
            NoMemberJwt,
            NoSuchSession,
            (status = 409, description = "The session has expired (`SESSION_CLOSED`)", body = ErrorJson),
        )
    )]
    fn complete_session() {}

    #[utoipa::path(
        get, path = "/v1/api/upload-sessions/{identifier}/upload-info", tag = "phone",
        summary = "Limits and remaining quota for the phone; the first call marks the session scanned",
        params(("identifier" = String, Path, description = "The session's identifier")),
        security(("upload_token" = [])),
        responses(
            (status = 200, description = "Limits, quota and the images so far", body = UploadInfo),
            NoUploadToken,
            WrongToken,
            SessionClosed,
        )
    )]
    fn upload_info() {}

    #[utoipa::path(
        post, path = "/v1/api/upload-sessions/{identifier}/images", tag = "phone",
        summary = "Upload one or more images (all or nothing)",
        params(
            ("identifier" = String, Path, description = "The session's identifier"),
            ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key answers the first upload's images", min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$"),
        ),
        request_body(content = String, content_type = "multipart/form-data",
            description = "One or more parts named `file`; other parts are ignored"),
        security(("upload_token" = [])),
        responses(
            (status = 201, description = "The stored images", body = Uploaded),
            NoUploadToken,
            WrongToken,
            (status = 408, description = "The body arrived too slowly", body = ErrorJson),
            (status = 411, description = "The head declares no body: send `Content-Length`", body = ErrorJson),
            SessionClosed,
            (status = 413, description = "An image or the session is over its byte limit", body = ErrorJson),
            (status = 415, description = "Not multipart, or a file that is not a supported image", body = ErrorJson),
            Undecodable,
            (status = 429, description = "Image quota (`QUOTA_EXCEEDED`) or upload rate (`RATE_LIMITED`)", body = ErrorJson,
                headers(("Retry-After" = u64, description = "Seconds to wait (rate limit only)"))),
        )
    )]
    fn upload_images() {}

    #[utoipa::path(
        delete, path = "/v1/api/upload-sessions/{identifier}/images/{image_id}", tag = "phone",
        summary = "Delete one image (the phone with its token, or the owner)",
        params(
            ("identifier" = String, Path, description = "The session's identifier"),
            ("image_id" = String, Path, description = "The image's id"),
            ("member_id" = Option<u64>, Query, description = "dev auth, owner: the member", minimum = 0, maximum = 4294967295_u64),
        ),
        security(("upload_token" = []), ("member_jwt" = []), ()),
        responses(
            (status = 204, description = "Deleted"),
            (status = 401, description = "No credentials", body = ErrorJson),
            (status = 404, description = "Unknown session or image, or wrong credentials", body = ErrorJson),
            SessionClosed,
        )
    )]
    fn delete_image() {}

    #[utoipa::path(
        put, path = "/v1/api/upload-sessions/{identifier}/images/order", tag = "sessions",
        summary = "Reorder the session's images (the owner, or the phone with its token); the first is the cover",
        params(
            ("identifier" = String, Path, description = "The session's identifier"),
            ("member_id" = Option<u64>, Query, description = "dev auth, owner: the member", minimum = 0, maximum = 4294967295_u64),
        ),
        request_body(content = OrderBody, content_type = "application/json"),
        security(("upload_token" = []), ("member_jwt" = []), ()),
        responses(
            (status = 200, description = "The images in their new order", body = Ordered),
            (status = 401, description = "No credentials", body = ErrorJson),
            (status = 404, description = "Unknown session, or wrong credentials", body = ErrorJson),
            (status = 411, description = "The head declares no body: send `Content-Length`", body = ErrorJson),
            SessionClosed,
            JsonTooLarge,
            NotJson,
        )
    )]
    fn reorder_images() {}

    #[utoipa::path(
        post, path = "/v1/api/upload-sessions/{identifier}/stream-ticket", tag = "sessions",
        summary = "A single-use, 60-second ticket for opening the session's stream (EventSource sends no headers)",
        description = "The owner asks with its credentials; the phone may ask with its upload token \
            (an extension of SPEC.md, which names the owner only), so neither a JWT nor the token \
            goes into the stream's URL. Either ticket is bound to this session, valid 60 s, for one \
            connect attempt (a failed one spends it too). The phone gets none for a closed session.",
        params(MemberSessionParams),
        request_body(content = Option<Object>, content_type = "application/json", description = "None, or `{}`"),
        security((), ("member_jwt" = []), ("upload_token" = [])),
        responses(
            (status = 201, description = "The ticket", body = Ticket),
            (status = 401, description = "jwt auth: no valid bearer JWT and no upload token", body = ErrorJson),
            (status = 404, description = "No such session for this member, or a wrong upload token", body = ErrorJson),
            (status = 409, description = "Upload token: the session is closed (`SESSION_CLOSED`)", body = ErrorJson),
            (status = 413, description = "The JSON body is over 64 KiB", body = ErrorJson),
            (status = 415, description = "A body that is not `application/json`", body = ErrorJson),
        )
    )]
    fn stream_ticket() {}

    #[utoipa::path(
        options, path = "/v1/api/upload-sessions/{identifier}/tus/", tag = "phone",
        summary = "tus 1.0: what this server supports (no token needed)",
        params(("identifier" = String, Path, description = "The session's identifier")),
        responses(
            (status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size` (the per-image limit), `Tus-Checksum-Algorithm`",
                headers(("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Max-Size" = u64), ("Tus-Checksum-Algorithm" = String))),
        )
    )]
    fn tus_options() {}

    #[utoipa::path(
        post, path = "/v1/api/upload-sessions/{identifier}/tus/", tag = "phone",
        summary = "tus 1.0 creation (and creation-with-upload): quotas are checked on Upload-Length before any byte",
        params(
            ("identifier" = String, Path, description = "The session's identifier"),
            ("Tus-Resumable" = String, Header, description = "The protocol version: `1.0.0` (else 412)", pattern = "^1\\.0\\.0$"),
            ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
            ("Upload-Metadata" = Option<String>, Header, description = "tus metadata: `filename`, `client_id` (a repeated creation with the same client_id answers the same upload)", pattern = "^[!-+\\-~]+(?: (?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?)?(?:, ?[!-+\\-~]+(?: (?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?)?)*$"),
            ("Upload-Checksum" = Option<String>, Header, description = "`sha1 BASE64` or `sha256 BASE64` of a creation body", pattern = "^(sha1 [A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=|sha256 [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$"),
        ),
        request_body(content = Option<Vec<u8>>, content_type = "application/offset+octet-stream", description = "Optional: the first bytes"),
        security(("upload_token" = [])),
        responses(
            (status = 201, description = "Created; `Location` names the upload, `Upload-Offset` and `Upload-Expires` say where it stands",
                headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String), ("Tus-Resumable" = String))),
            NoUploadToken,
            WrongToken,
            SessionClosed,
            (status = 412, description = "A `Tus-Resumable` other than 1.0.0 (`TUS_VERSION_UNSUPPORTED`)", body = ErrorJson),
            (status = 413, description = "Upload-Length over the per-image limit or the session's bytes", body = ErrorJson),
            (status = 415, description = "A body not sent as `application/offset+octet-stream`, or bytes that are not a supported image", body = ErrorJson),
            Undecodable,
            ImageQuota,
            (status = 460, description = "The creation body does not match `Upload-Checksum` (`CHECKSUM_MISMATCH`)", body = ErrorJson),
        )
    )]
    fn tus_create() {}

    #[utoipa::path(
        head, path = "/v1/api/upload-sessions/{identifier}/tus/{upload_id}", tag = "phone",
        summary = "tus 1.0: where the upload stands (after the last byte: Offset = Length until the session ends)",
        params(TusUploadParams),
        security(("upload_token" = [])),
        responses(
            (status = 200, description = "`Upload-Offset` and `Upload-Length`",
                headers(("Upload-Offset" = u64), ("Upload-Length" = u64), ("Upload-Expires" = String))),
            (status = 401, description = "No upload token"),
            (status = 404, description = "Unknown, terminated or expired upload, or wrong token"),
            (status = 412, description = "A `Tus-Resumable` other than 1.0.0"),
        )
    )]
    fn tus_head() {}

    #[utoipa::path(
        patch, path = "/v1/api/upload-sessions/{identifier}/tus/{upload_id}", tag = "phone",
        summary = "tus 1.0: the next bytes at `Upload-Offset`; the last byte stores the image",
        params(
            TusUploadParams,
            ("Upload-Offset" = u64, Header, description = "Where these bytes start: the upload's current offset"),
            ("Upload-Checksum" = Option<String>, Header, description = "`sha1 BASE64` or `sha256 BASE64` of this request's body", pattern = "^(sha1 [A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=|sha256 [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$"),
        ),
        request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
        security(("upload_token" = [])),
        responses(
            (status = 204, description = "Saved; `Upload-Offset` is the new offset",
                headers(("Upload-Offset" = u64), ("Upload-Expires" = String))),
            NoUploadToken,
            (status = 404, description = "Unknown, terminated or expired upload, or wrong token", body = ErrorJson),
            (status = 408, description = "The body arrived too slowly (the bytes received are kept)", body = ErrorJson),
            (status = 411, description = "The head declares no body: send `Content-Length`", body = ErrorJson),
            (status = 409, description = "`Upload-Offset` is not the upload's offset (`OFFSET_MISMATCH`), or the session is closed (`SESSION_CLOSED`)", body = ErrorJson),
            TusVersion,
            (status = 413, description = "More bytes than `Upload-Length`, or the session is over its bytes", body = ErrorJson),
            (status = 415, description = "Not `application/offset+octet-stream`, or bytes that are not a supported image", body = ErrorJson),
            Undecodable,
            ImageQuota,
            (status = 460, description = "The body does not match `Upload-Checksum` (`CHECKSUM_MISMATCH`); nothing of it is kept", body = ErrorJson),
        )
    )]
    fn tus_patch() {}

    #[utoipa::path(
        delete, path = "/v1/api/upload-sessions/{identifier}/tus/{upload_id}", tag = "phone",
        summary = "tus 1.0 termination: the upload and its bytes are gone",
        params(TusUploadParams),
        security(("upload_token" = [])),
        responses(
            (status = 204, description = "Terminated"),
            NoUploadToken,
            (status = 404, description = "Unknown or already terminated upload, or wrong token", body = ErrorJson),
            SessionClosed,
            TusVersion,
        )
    )]
    fn tus_terminate() {}

    #[utoipa::path(
        get, path = "/v1/api/images/{image_id}", tag = "images",
        summary = "The image as stored",
        params(
            ("image_id" = String, Path, description = "The image's id"),
            ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
        ),
        responses(
            (status = 200, description = "The bytes, with their detected type, a strong ETag and long-lived caching",
                content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/gif"))),
            (status = 304, description = "Not modified"),
            (status = 404, description = "No such image", body = ErrorJson),
        )
    )]
    fn image() {}

    #[utoipa::path(
        get, path = "/v1/api/images/{image_id}/thumbnail", tag = "images",
        summary = "The image's thumbnail (JPEG, longest side 320 px by default)",
        params(
            ("image_id" = String, Path, description = "The image's id"),
            ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
        ),
        responses(
            (status = 200, description = "The thumbnail", content(("image/jpeg"))),
            (status = 304, description = "Not modified"),
            (status = 404, description = "No such image", body = ErrorJson),
        )
    )]
    fn thumbnail() {}

    #[utoipa::path(
        get, path = "/v1/api/sse/events", tag = "sessions",
        summary = "The session's live stream (Server-Sent Events: `session`, the snapshot event, `progress`)",
        params(
            ("event" = String, Query, description = "The snapshot event's name, `[A-Za-z0-9_.:-]{1,64}`", pattern = "^[A-Za-z0-9_.:-]{1,64}$"),
            ("identifier" = String, Query, description = "The session's identifier", min_length = 1),
            ("member_id" = Option<u64>, Query, description = "dev auth: the owner", minimum = 0, maximum = 4294967295_u64),
            ("ticket" = Option<String>, Query, description = "A stream ticket, in place of member credentials"),
            ("last_event_id" = Option<String>, Query, description = "The version last seen, for a first connect (else the `Last-Event-ID` header)"),
            ("Last-Event-ID" = Option<String>, Header, description = "The version last seen"),
        ),
        security((), ("member_jwt" = [])),
        responses(
            (status = 200, description = "An endless `text/event-stream` until the session ends", content_type = "text/event-stream", body = String),
            (status = 204, description = "The session has ended: do not reconnect"),
            (status = 401, description = "A spent, expired or unknown ticket, or (jwt auth) no valid credentials", body = ErrorJson),
            NoSuchSession,
            (status = 429, description = "Too many streams from this client (`RATE_LIMITED`)", body = ErrorJson),
        )
    )]
    fn sse_events() {}

    #[utoipa::path(
        get, path = "/healthz", tag = "operations", summary = "Liveness",
        responses((status = 200, description = "The process answers", content_type = "text/plain", body = String))
    )]
    fn healthz() {}

    #[utoipa::path(
        get, path = "/readyz", tag = "operations",
        summary = "Readiness: the database, the bus and the blob store are reachable",
        responses(
            (status = 200, description = "Ready", content_type = "text/plain", body = String),
            (status = 503, description = "Not ready, naming the backend that is not", body = ErrorJson),
        )
    )]
    fn readyz() {}

    #[utoipa::path(
        get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
        responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String))
    )]
    fn metrics() {}

    #[utoipa::path(
        get, path = "/openapi.json", tag = "operations", summary = "This document",
        responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
    )]
    fn openapi_json() {}

    #[utoipa::path(
        get, path = "/v1/widget.js", tag = "operations",
        summary = "The embeddable `<qrupload-panel>` element (an ES module; CORS for the allowed origins)",
        responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String))
    )]
    fn widget_js() {}

    #[utoipa::path(
        get, path = "/v1/widget-view.js", tag = "operations",
        summary = "The module `widget.js` imports",
        responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String))
    )]
    fn widget_view_js() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document is what the code generates. After changing a route or a DTO,
    /// regenerate it: `cargo run -- openapi > docs/openapi.json`.
    #[test]
    fn the_committed_document_is_current() {
        let committed = include_str!("../../../docs/openapi.json");
        assert!(
            committed == document_json(),
            "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn it_is_openapi_3_1_and_every_error_names_the_error_schema() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "head" {
                    continue; // No body, so no schema.
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorJson",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
