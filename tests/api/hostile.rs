//! Hostile input: what the open-internet edges answer to attacks, and that nothing is left
//! behind. Every case sends one attack and expects its status and error `reason`; then the
//! runner checks that no image row and no blob was left behind (or exactly the new image's,
//! for an accepted file). Each group ends by checking that the process still serves
//! (`/healthz` and a normal upload). Uploads use a 4 MiB per-image limit here.
//!
//! Files, named `.jpg` whatever they hold (the type comes from the bytes):
//!
//! | attack | answer |
//! |---|---|
//! | JPEG + trailing HTML, JPEG + trailing ZIP (polyglots) | 201; the stored copy ends at the JPEG's EOI: the trailer is gone |
//! | JPEG with HTML in a comment (COM) segment | 201; the comment is not stored |
//! | SVG, AVIF, PDF, EXE (`MZ`), HTML | 415 `UNSUPPORTED_MEDIA_TYPE` |
//! | HEIC brands with no image in the container | 422 `UNPROCESSABLE_IMAGE` |
//! | zero bytes | 415 `UNSUPPORTED_MEDIA_TYPE` |
//! | JPEG whose scan is whole but whose EOI is missing (libjpeg renders every pixel) | 201; the stored copy ends with an EOI and decodes at full size |
//! | truncated JPEG (cut inside its scan), JPEG of three bytes | 422 `UNPROCESSABLE_IMAGE` |
//! | GIF or PNG magic (and a small header) followed by HTML | 422 `UNPROCESSABLE_IMAGE` |
//! | JPEG whose APP1 segments chain to 3 MB (under the limit) | 201; none of them is stored |
//! | the same chained past 4 MiB | 413 `PAYLOAD_TOO_LARGE` (reading stops at the limit) |
//! | JPEG frame header claiming 65500×65500 | 413 `PAYLOAD_TOO_LARGE`, before decoding |
//! | PNG bomb: 100000×100000 header, IDAT inflating to 64 MiB | 413 `PAYLOAD_TOO_LARGE`, before decoding |
//! | PNG bomb: 1000×1000 header, IDAT inflating to 64 MiB | 201; the decoder stops at 1000×1000 |
//! | GIF of 5,000 frames | 201 (frames are kept; each is checked against the pixel limit; the thumbnail decodes the first) |
//! | WebP whose RIFF size runs past the file, or is too small | 422 `UNPROCESSABLE_IMAGE` |
//! | WebP whose VP8X canvas disagrees with its VP8L frame (larger, smaller) | 422 `UNPROCESSABLE_IMAGE` |
//! | WebP whose VP8X canvas, or VP8L header, claims 20000×20000 / 16384×16384 | 413 `PAYLOAD_TOO_LARGE` |
//!
//! Multipart and HTTP framing:
//!
//! | attack | answer |
//! |---|---|
//! | no closing boundary; a part opened and never written | 400 `INVALID_ARGUMENT` |
//! | a part named `<script>…` cut short | 400 `INVALID_ARGUMENT`; the message does not repeat the name |
//! | 1,000 parts that are not files | 400 `INVALID_ARGUMENT` (at most `max_images + 8` parts) |
//! | 1,000 parts, each a valid JPEG | 429 `QUOTA_EXCEEDED`; none kept (all or nothing) |
//! | a 100 KB part-header line | 400 `INVALID_ARGUMENT` (about 32 KiB of part headers per part) |
//! | an endless part header, an endless preamble (64 MiB, streamed) | 400 `INVALID_ARGUMENT` once ~50 KB of it is buffered; far less than 16 MiB is read |
//! | the boundary split across TCP writes | 201 |
//! | only a part named `photo`; a part without a name | 400 `INVALID_ARGUMENT` |
//! | `Content-Type: image/jpeg`, `text/html`, multipart without boundary, `multipart/mixed` | 400 `INVALID_ARGUMENT` |
//! | chunked transfer coding with a chunk size that is not hexadecimal | 400 `INVALID_ARGUMENT` |
//! | `Content-Length` shorter than the body (closing boundary cut off) | 400 `INVALID_ARGUMENT` |
//! | `Content-Length` longer than the body, client half-closes its write side | 400 `INVALID_ARGUMENT`: an incomplete body is never committed |
//!
//! File names (the name is never a storage key and never echoed):
//!
//! | attack | answer |
//! |---|---|
//! | `../../etc/passwd.jpg`, RTLO (U+202E), 10 KB of text, HTML, percent-encoded NUL | 201, stored under `{identifier}/{random id}` |
//! | a raw NUL byte in the part header | 400 `INVALID_ARGUMENT` (not a valid header) |
//!
//! Identifiers, parameters, headers:
//!
//! | attack | answer |
//! |---|---|
//! | identifier: Unicode, `' OR 1=1 --`, `%27`, `;DROP TABLE images`, 7,000 chars, NUL, `../../etc` | 404 `NOT_FOUND` (malformed is unknown) |
//! | image id: `../../qrupload.db`, `..` | 404 `NOT_FOUND` |
//! | `member_id`: `4294967296`, 7,000 digits, `-1`, `+1`, empty, missing, `1 OR 1=1`, `%27`, Arabic-Indic digit | 400 `INVALID_ARGUMENT` |
//! | SSE `identifier` missing or empty | 400 `INVALID_ARGUMENT`; SQL text as identifier: 404 `NOT_FOUND` |
//! | SSE `event` with CR/LF (`a%0D%0Adata:x`), empty, 65 chars, 7 KB | 400 `INVALID_ARGUMENT` |
//! | identifier, `member_id` or `event` of 10,000 chars (a target over 8 KiB) | 414 `URI_TOO_LONG`, from the serve loop, on any request of a connection |
//! | `Idempotency-Key` of 10 KB, with a tab, with non-ASCII bytes, empty | 400 `INVALID_ARGUMENT` |
//! | no `Authorization`, `Basic` scheme, `Bearer` with nothing | 401 `UNAUTHENTICATED` |
//! | wrong token, 10 KB token, SQL text as token | 404 `NOT_FOUND` |
//!
//! gRPC `UploadImage`:
//!
//! | attack | answer |
//! |---|---|
//! | first message a chunk; metadata twice; metadata and no chunk; a PDF | `INVALID_ARGUMENT` |
//! | identifier empty | `INVALID_ARGUMENT`; SQL text, 10,000 chars, another member's session: `NOT_FOUND` |
//! | `idempotency_key` of 10 KB or with CR/LF | `INVALID_ARGUMENT` |
//! | one chunk of 5 MiB (over tonic's 4 MiB message limit) | `RESOURCE_EXHAUSTED` |
//! | 100 MB of chunks, produced lazily | `RESOURCE_EXHAUSTED` after the 4 MiB limit; under 32 MiB produced |
//! | metadata, then silence; silence from the start | `DEADLINE_EXCEEDED` after `upload.stream_idle_timeout` |

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use qrupload::{
    api::image::v1 as pb,
    biz::imaging::testdata,
    conf::{ByteSize, Config},
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{TestApp, jpeg};

/// The image size limit the groups attack.
fn limit(c: &mut Config) {
    c.upload.max_image_bytes = ByteSize(4 << 20);
}
const BOUNDARY: &str = "hostileB0undary";

// ---------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------

/// The session a group attacks.
struct Target {
    id: String,
    token: String,
}

/// What came back; `status` 0 when the connection closed without an answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Check = for<'a> fn(&'a TestApp, &'a Answer) -> BoxFuture<'a, ()>;

enum Attack {
    Http(reqwest::RequestBuilder),
    /// Raw bytes on one TCP connection, written in these pieces; then the write side is
    /// closed if `half_close`.
    Tcp {
        pieces: Vec<Vec<u8>>,
        half_close: bool,
    },
    /// A request whose body is `head` and then 64 MiB of `filler`, produced lazily; the
    /// server must answer after reading little of it.
    Endless {
        request: reqwest::RequestBuilder,
        head: Vec<u8>,
        filler: u8,
    },
}

struct Case {
    name: &'static str,
    attack: Attack,
    status: u16,
    /// Error reason; empty for 201.
    reason: &'static str,
    /// The server stops reading the body before its end and closes the connection after
    /// answering, so the client may see the close instead of the answer.
    may_cut: bool,
    check: Option<Check>,
}

fn case(name: &'static str, attack: Attack, status: u16, reason: &'static str) -> Case {
    Case {
        name,
        attack,
        status,
        reason,
        may_cut: false,
        check: None,
    }
}

fn created(name: &'static str, attack: Attack, check: Check) -> Case {
    case(name, attack, 201, "").then(check)
}

impl Case {
    fn then(self, check: Check) -> Case {
        Case {
            check: Some(check),
            ..self
        }
    }

    fn cut(self) -> Case {
        Case {
            may_cut: true,
            ..self
        }
    }
}

async fn send(app: &TestApp, name: &str, attack: Attack) -> Answer {
    match attack {
        Attack::Http(request) => answer_of(request.send().await).await,
        Attack::Tcp { pieces, half_close } => tcp_exchange(app, &pieces, half_close).await,
        Attack::Endless {
            request,
            head,
            filler,
        } => {
            let pulled = Arc::new(AtomicU64::new(0));
            let counter = pulled.clone();
            let chunks =
                std::iter::once(head).chain((0..1024).map(move |_| vec![filler; 64 << 10]));
            let body = futures::stream::iter(chunks).then(move |chunk| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, std::io::Error>(chunk)
                }
            });
            let answer =
                answer_of(request.body(reqwest::Body::wrap_stream(body)).send().await).await;
            let pulled = pulled.load(Ordering::SeqCst);
            assert!(
                pulled < 16 << 20,
                "{name}: the server stopped reading early ({pulled} bytes produced of 64 MiB)"
            );
            answer
        }
    }
}

async fn answer_of(result: reqwest::Result<reqwest::Response>) -> Answer {
    match result {
        Ok(res) => {
            let status = res.status().as_u16();
            let body = res.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Answer { status, body }
        }
        Err(_) => Answer {
            status: 0,
            body: Vec::new(),
        },
    }
}

/// Runs the cases in order against one session, each checked on its own; every failing
/// case is reported, not only the first.
async fn run(app: &TestApp, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let name = case.name;
        let rows = app.image_rows().await;
        let blobs = app.blob_count();
        let answer = send(app, name, case.attack).await;
        let cut = case.may_cut && answer.status == 0;
        let body = answer.json();
        if answer.status != case.status && !cut {
            failures.push(format!(
                "{name}: expected {} {}, got {} {}",
                case.status,
                case.reason,
                answer.status,
                answer.text()
            ));
        } else if case.status != 201 && !cut {
            let shape = body["code"] == case.status
                && body["reason"] == case.reason
                && body["message"].is_string();
            if !shape {
                failures.push(format!("{name}: expected {}, got {body}", case.reason));
            }
        }
        let added = if answer.status == 201 {
            body["images"].as_array().map_or(0, Vec::len)
        } else {
            0
        };
        if answer.status == case.status
            && let Some(check) = case.check
        {
            check(app, &answer).await;
        }
        let rows_now = app.image_rows().await;
        if rows_now != rows + added as u64 {
            failures.push(format!(
                "{name}: {rows_now} image rows, expected {}",
                rows + added as u64
            ));
        }
        let blobs_now = blobs_settle(app, blobs + 2 * added).await;
        if blobs_now != blobs + 2 * added {
            failures.push(format!(
                "{name}: {blobs_now} blobs, expected {}",
                blobs + 2 * added
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A refused upload deletes its blobs in the background: waits for the count to reach
/// `expected` (for a few seconds at most) and returns the count.
async fn blobs_settle(app: &TestApp, expected: usize) -> usize {
    for _ in 0..200 {
        if app.blob_count() == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.blob_count()
}

/// The end of every group: still alive, still accepting a normal upload.
async fn still_serving(app: &TestApp, t: &Target) {
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    let rows = app.image_rows().await;
    let blobs = app.blob_count();
    let res = app
        .upload(&t.id, &t.token, vec![("ok.jpg", jpeg(40, 30))], None)
        .await;
    assert_eq!(res.status(), 201, "a normal upload still works");
    assert_eq!(app.image_rows().await, rows + 1);
    assert_eq!(app.blob_count(), blobs + 2);
}

async fn group(edit: impl FnOnce(&mut Config)) -> (TestApp, Target) {
    let app = TestApp::spawn_with(edit).await;
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("id").to_owned();
    (app, Target { id, token })
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

fn images_path(id: &str) -> String {
    format!("/v1/api/upload-sessions/{id}/images")
}

/// POST to the upload route of `id` with the group's token.
fn post(app: &TestApp, t: &Target, id: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(&images_path(id)))
        .bearer_auth(&t.token)
}

/// Parts named `file` built by the client library (file names percent-encoded as it does).
fn files(app: &TestApp, t: &Target, files: &[(&str, Vec<u8>)]) -> Attack {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name((*name).to_owned()),
        );
    }
    Attack::Http(post(app, t, &t.id).multipart(form))
}

fn one(app: &TestApp, t: &Target, bytes: Vec<u8>) -> Attack {
    files(app, t, &[("photo.jpg", bytes)])
}

/// A hand-built multipart body to the upload route.
fn multipart(app: &TestApp, t: &Target, body: Vec<u8>) -> Attack {
    Attack::Http(
        post(app, t, &t.id)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body),
    )
}

/// One part: its header lines (raw bytes) and data.
fn part(headers: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = format!("--{BOUNDARY}\r\n").into_bytes();
    v.extend_from_slice(headers);
    v.extend_from_slice(b"\r\n\r\n");
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

fn file_part(filename: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = b"Content-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
    h.extend_from_slice(filename);
    h.extend_from_slice(b"\"\r\nContent-Type: image/jpeg");
    part(&h, data)
}

fn closed(mut parts: Vec<u8>) -> Vec<u8> {
    parts.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    parts
}

fn get(app: &TestApp, path: &str) -> Attack {
    Attack::Http(app.client.get(app.url(path)))
}

fn sse(app: &TestApp, query: &str) -> Attack {
    get(app, &format!("/v1/api/sse/events?{query}"))
}

/// The head of an upload request for raw TCP, with the given `Content-Length`.
fn raw_head(t: &Target, content_length: usize) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
        images_path(&t.id),
        t.token
    )
    .into_bytes()
}

/// Writes the pieces (each flushed on its own, with a pause so they travel apart), then
/// reads one response.
async fn tcp_exchange(app: &TestApp, pieces: &[Vec<u8>], half_close: bool) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for piece in pieces {
        if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if half_close {
        let _ = stream.shutdown().await;
    }
    read_response(&mut stream).await
}

/// One HTTP/1.1 response with a `Content-Length` (all of this server's answers have one).
async fn read_response(stream: &mut tokio::net::TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length
                && raw.len() >= end + 4 + length
            {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = raw[end + 4..end + 4 + length].to_vec();
                return Answer { status, body };
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => {
                return Answer {
                    status: 0,
                    body: raw,
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile files
// ---------------------------------------------------------------------------------------

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A real JPEG with `count` segments of type `marker` inserted right after SOI.
fn jpeg_with_segments(marker: u8, payload: &[u8], count: usize) -> Vec<u8> {
    let base = jpeg(64, 48);
    let mut v = base[..2].to_vec();
    let len = u16::try_from(payload.len() + 2).expect("segment fits");
    for _ in 0..count {
        v.extend_from_slice(&[0xFF, marker]);
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(payload);
    }
    v.extend_from_slice(&base[2..]);
    v
}

/// APP1 segments (XMP-like, the largest a segment can be) chained to about `bytes`.
fn app1_chain(bytes: usize) -> Vec<u8> {
    let mut payload = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    payload.resize(65_533, b'X');
    jpeg_with_segments(0xE1, &payload, bytes / 65_537 + 1)
}

fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut v = jpeg(16, 16);
    let sof = v
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    v[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    v[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    v
}

/// A zlib stream of `n` zero bytes, a few kilobytes per megabyte: a literal and then
/// 258-byte matches at distance 1, in one fixed-Huffman block.
fn zlib_zeros(n: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, count: u32) {
            for i in 0..count {
                self.acc |= ((value >> i) & 1) << self.len;
                self.len += 1;
                if self.len == 8 {
                    self.out.push(self.acc as u8);
                    (self.acc, self.len) = (0, 0);
                }
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, code: u32, count: u32) {
            for i in (0..count).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman codes
    let mut left = n;
    let literal_zero = |bits: &mut Bits| bits.code(0x30, 8);
    if left > 0 {
        literal_zero(&mut bits);
        left -= 1;
    }
    while left >= 258 {
        bits.code(0xC5, 8); // length 258
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        literal_zero(&mut bits);
    }
    bits.code(0, 7); // end of block
    if bits.len > 0 {
        bits.out.push(bits.acc as u8);
    }
    let adler = (((n % 65_521) as u32) << 16) | 1;
    bits.out.extend_from_slice(&adler.to_be_bytes());
    bits.out
}

/// A greyscale PNG whose header says `width`×`height` and whose IDAT inflates to `inflated`
/// zero bytes.
fn png_bomb(width: u32, height: u32, inflated: usize) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    cat(&[
        b"\x89PNG\r\n\x1a\n",
        &testdata::png_chunk(b"IHDR", &ihdr),
        &testdata::png_chunk(b"IDAT", &zlib_zeros(inflated)),
        &testdata::png_chunk(b"IEND", &[]),
    ])
}

/// A 1×1 GIF with `frames` frames.
fn gif_frames(frames: usize) -> Vec<u8> {
    let mut v = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    for _ in 0..frames {
        v.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
    }
    v.push(0x3B);
    v
}

/// A small lossless WebP (VP8X + VP8L), with a change applied to its bytes.
fn webp(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = testdata::small_webp(16, 16);
    assert_eq!(&v[12..16], b"VP8X");
    assert_eq!(&v[30..34], b"VP8L");
    edit(&mut v);
    v
}

fn set_canvas(v: &mut [u8], width: u32, height: u32) {
    v[24..27].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
    v[27..30].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
}

/// The VP8L chunk alone in a simple-layout RIFF, its header claiming `width`×`height`.
fn webp_vp8l_claiming(width: u32, height: u32) -> Vec<u8> {
    let v = webp(|_| {});
    let size = u32::from_le_bytes(v[34..38].try_into().expect("4 bytes")) as usize;
    let mut chunk = v[30..38 + size + size % 2].to_vec();
    let bits = u32::from_le_bytes(chunk[9..13].try_into().expect("4 bytes"));
    let bits = (bits & !0x0FFF_FFFF) | (width - 1) | ((height - 1) << 14);
    chunk[9..13].copy_from_slice(&bits.to_le_bytes());
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((chunk.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend(chunk);
    out
}

const HTML: &[u8] =
    b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>";
const SVG: &[u8] = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>"#;
const HEIC: &[u8] = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic\x00\x00\x00\x08free";
const AVIF: &[u8] = b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif\x00\x00\x00\x08free";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
const EXE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00PE\x00\x00L\x01";

/// A ZIP local file header and end-of-central-directory record, as appended to a JPEG to
/// make a JPEG/ZIP polyglot.
fn zip_trailer() -> Vec<u8> {
    let mut v = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&[9, 0, 0, 0]);
    v.extend_from_slice(b"evil.html");
    v.extend_from_slice(b"PK\x05\x06");
    v.extend_from_slice(&[0; 18]);
    v
}

/// The stored copy of the first image of a 201 answer.
async fn stored(app: &TestApp, answer: &Answer) -> Vec<u8> {
    let body = answer.json();
    let url = body["images"][0]["url"].as_str().expect("image url");
    let res = app.client.get(app.url(url)).send().await.expect("image");
    assert_eq!(res.status(), 200);
    res.bytes().await.expect("bytes").to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ends_at_eoi_without<'a>(
    app: &'a TestApp,
    answer: &'a Answer,
    marker: &'static [u8],
) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let bytes = stored(app, answer).await;
        assert!(
            bytes.ends_with(&[0xFF, 0xD9]),
            "the stored copy ends at EOI"
        );
        assert!(!contains(&bytes, marker), "the polyglot's payload is gone");
    })
}

fn ended_with_eoi<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let bytes = stored(app, answer).await;
        assert!(bytes.ends_with(&[0xFF, 0xD9]), "an EOI is appended");
        let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
            .expect("the stored copy decodes");
        assert_eq!((decoded.width(), decoded.height()), (64, 64));
    })
}

fn no_html<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    ends_at_eoi_without(app, answer, b"<script")
}

fn no_zip_trailer<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    ends_at_eoi_without(app, answer, b"PK\x03\x04")
}

fn no_app1<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let bytes = stored(app, answer).await;
        assert!(!crate::helpers::has_other_metadata(&bytes));
        assert!(bytes.len() < 64 << 10, "{} bytes stored", bytes.len());
    })
}

fn stored_as_gif<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let body = answer.json();
        assert_eq!(body["images"][0]["content_type"], "image/gif");
        assert!(stored(app, answer).await.starts_with(b"GIF89a"));
    })
}

fn stored_as_png<'a>(_: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let image = &answer.json()["images"][0];
        assert_eq!(image["content_type"], "image/png");
        assert_eq!(
            (image["width"].as_u64(), image["height"].as_u64()),
            (Some(1000), Some(1000))
        );
    })
}

#[tokio::test]
async fn hostile_files() {
    let (app, t) = group(limit).await;
    let (a, t) = (&app, &t);
    let mut truncated = jpeg(64, 64);
    truncated.truncate(truncated.len() / 2);
    let mut no_eoi = jpeg(64, 64);
    no_eoi.truncate(no_eoi.len() - 2);
    let comment = [b"<html>".as_slice(), HTML].concat();
    let four_mib_and_more = app1_chain((4 << 20) + (200 << 10));
    assert!(four_mib_and_more.len() > 4 << 20);
    #[rustfmt::skip]
    let cases = vec![
        created("JPEG/HTML polyglot", one(a, t, cat(&[&jpeg(64, 48), HTML])), no_html),
        created("JPEG/ZIP polyglot", one(a, t, cat(&[&jpeg(64, 48), &zip_trailer()])), no_zip_trailer),
        created("HTML in a JPEG comment", one(a, t, jpeg_with_segments(0xFE, &comment, 1)), no_html),
        case("SVG named .jpg", one(a, t, SVG.to_vec()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("AVIF named .jpg", one(a, t, AVIF.to_vec()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("HEIC without an image", one(a, t, HEIC.to_vec()), 422, "UNPROCESSABLE_IMAGE"),
        case("PDF named .jpg", one(a, t, PDF.to_vec()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("EXE named .jpg", one(a, t, EXE.to_vec()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("HTML named .jpg", one(a, t, HTML.to_vec()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("zero bytes", one(a, t, Vec::new()), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("truncated JPEG", one(a, t, truncated), 422, "UNPROCESSABLE_IMAGE"),
        created("JPEG without EOI", one(a, t, no_eoi), ended_with_eoi),
        case("JPEG of three bytes", one(a, t, vec![0xFF, 0xD8, 0xFF]), 422, "UNPROCESSABLE_IMAGE"),
        case("GIF magic, then HTML", one(a, t, cat(&[b"GIF89a\x01\x00\x01\x00\x00\x00\x00", HTML])), 422, "UNPROCESSABLE_IMAGE"),
        case("PNG magic, then HTML", one(a, t, cat(&[b"\x89PNG\r\n\x1a\n", HTML])), 422, "UNPROCESSABLE_IMAGE"),
        created("APP1 chain of 3 MB", one(a, t, app1_chain(3 << 20)), no_app1),
        case("APP1 chain past 4 MiB", one(a, t, four_mib_and_more), 413, "PAYLOAD_TOO_LARGE").cut(),
        case("JPEG claiming 65500x65500", one(a, t, jpeg_claiming(65_500, 65_500)), 413, "PAYLOAD_TOO_LARGE"),
        case("PNG bomb over the pixel limit", one(a, t, png_bomb(100_000, 100_000, 64 << 20)), 413, "PAYLOAD_TOO_LARGE"),
        created("PNG bomb within the pixel limit", one(a, t, png_bomb(1000, 1000, 64 << 20)), stored_as_png),
        created("GIF of 5,000 frames", one(a, t, gif_frames(5000)), stored_as_gif),
        case("WebP RIFF size past the end", one(a, t, webp(|v| { let n = v.len() as u32; v[4..8].copy_from_slice(&n.to_le_bytes()); })), 422, "UNPROCESSABLE_IMAGE"),
        case("WebP RIFF size too small", one(a, t, webp(|v| v[4..8].copy_from_slice(&4u32.to_le_bytes()))), 422, "UNPROCESSABLE_IMAGE"),
        case("WebP canvas larger than its frame", one(a, t, webp(|v| set_canvas(v, 4000, 4000))), 422, "UNPROCESSABLE_IMAGE"),
        case("WebP canvas smaller than its frame", one(a, t, webp(|v| set_canvas(v, 8, 8))), 422, "UNPROCESSABLE_IMAGE"),
        case("WebP canvas of 20000x20000", one(a, t, webp(|v| set_canvas(v, 20_000, 20_000))), 413, "PAYLOAD_TOO_LARGE"),
        case("WebP VP8L claiming 16384x16384", one(a, t, webp_vp8l_claiming(16_384, 16_384)), 413, "PAYLOAD_TOO_LARGE"),
    ];
    run(a, cases).await;
    still_serving(a, t).await;
}

// ---------------------------------------------------------------------------------------
// Multipart and HTTP framing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_framing() {
    let (app, t) = group(limit).await;
    let (a, t) = (&app, &t);
    let photo = jpeg(32, 24);
    let good = closed(file_part(b"a.jpg", &photo));

    let many_fields: Vec<u8> = (0..1000)
        .flat_map(|i| {
            part(
                format!("Content-Disposition: form-data; name=\"x{i}\"").as_bytes(),
                b"1",
            )
        })
        .collect();
    let many_files: Vec<u8> = (0..1000)
        .flat_map(|_| file_part(b"a.jpg", &photo))
        .collect();
    let long_header = format!(
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nX-Long: {}",
        "h".repeat(100_000)
    );
    let endless_header = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nX-Endless: ").into_bytes();
    let multipart_type = format!("multipart/form-data; boundary={BOUNDARY}");

    // The boundary and the closing boundary each split in two, on separate writes.
    let split_at = |body: &[u8], needle: &str, n: usize| -> usize {
        let at = body
            .windows(needle.len())
            .rposition(|w| w == needle.as_bytes())
            .expect("needle");
        at + n
    };
    let first = split_at(&good, &format!("--{BOUNDARY}\r\n"), 5);
    let last = split_at(&good, &format!("--{BOUNDARY}--"), 9);
    let split = vec![
        raw_head(t, good.len()),
        good[..first].to_vec(),
        good[first..last].to_vec(),
        good[last..].to_vec(),
    ];
    // Chunked transfer coding whose second chunk size is not hexadecimal.
    let head = String::from_utf8(raw_head(t, 0))
        .expect("ASCII")
        .replace("Content-Length: 0", "Transfer-Encoding: chunked");
    let chunked = [
        head.as_bytes(),
        format!("{:x}\r\n", first).as_bytes(),
        &good[..first],
        b"\r\nzz\r\n",
        &good[first..],
    ]
    .concat();
    // Content-Length shorter than the body: the closing boundary falls outside it.
    let short = vec![[raw_head(t, good.len() - 10), good.clone()].concat()];
    // Content-Length longer than the body, then the client closes its write side.
    let long = vec![[raw_head(t, good.len() + 100), good.clone()].concat()];

    #[rustfmt::skip]
    let cases = vec![
        case("no closing boundary", multipart(a, t, file_part(b"a.jpg", &photo)), 400, "INVALID_ARGUMENT"),
        case("a part named with HTML, cut short", multipart(a, t, part(b"Content-Disposition: form-data; name=\"<script>alert(1)</script>\"", &photo)), 400, "INVALID_ARGUMENT").then(no_echo),
        case("a part opened and never written", multipart(a, t, [file_part(b"a.jpg", &photo), format!("--{BOUNDARY}\r\n").into_bytes()].concat()), 400, "INVALID_ARGUMENT"),
        case("1,000 parts that are not files", multipart(a, t, closed(many_fields)), 400, "INVALID_ARGUMENT"),
        case("1,000 parts, each a JPEG", multipart(a, t, closed(many_files)), 429, "QUOTA_EXCEEDED"),
        case("a 100 KB part-header line", multipart(a, t, closed(part(long_header.as_bytes(), &photo))), 400, "INVALID_ARGUMENT"),
        case("an endless part header", Attack::Endless { request: post(a, t, &t.id).header("content-type", &multipart_type), head: endless_header, filler: b'h' }, 400, "INVALID_ARGUMENT").cut(),
        case("an endless preamble", Attack::Endless { request: post(a, t, &t.id).header("content-type", &multipart_type), head: Vec::new(), filler: b'p' }, 400, "INVALID_ARGUMENT").cut(),
        created("the boundary split across TCP writes", Attack::Tcp { pieces: split, half_close: false }, |_, _| Box::pin(async {})),
        case("only a part named photo", multipart(a, t, closed(part(b"Content-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"", &photo))), 400, "INVALID_ARGUMENT"),
        case("a part without a name", multipart(a, t, closed(part(b"Content-Disposition: form-data; filename=\"a.jpg\"", &photo))), 400, "INVALID_ARGUMENT"),
        case("a part without headers", multipart(a, t, closed(part(b"X-Nothing: 1", &photo))), 400, "INVALID_ARGUMENT"),
        case("Content-Type: image/jpeg", Attack::Http(post(a, t, &t.id).header("content-type", "image/jpeg").body(photo.clone())), 400, "INVALID_ARGUMENT"),
        case("Content-Type: text/html", Attack::Http(post(a, t, &t.id).header("content-type", "text/html").body(HTML)), 400, "INVALID_ARGUMENT"),
        case("multipart without a boundary", Attack::Http(post(a, t, &t.id).header("content-type", "multipart/form-data").body(good.clone())), 400, "INVALID_ARGUMENT"),
        case("multipart/mixed", Attack::Http(post(a, t, &t.id).header("content-type", format!("multipart/mixed; boundary={BOUNDARY}")).body(good.clone())), 400, "INVALID_ARGUMENT"),
        case("malformed chunked encoding", Attack::Tcp { pieces: vec![chunked], half_close: false }, 400, "INVALID_ARGUMENT"),
        case("Content-Length shorter than the body", Attack::Tcp { pieces: short, half_close: false }, 400, "INVALID_ARGUMENT"),
        case("Content-Length longer than the body, half-closed", Attack::Tcp { pieces: long, half_close: true }, 400, "INVALID_ARGUMENT"),
    ];
    run(a, cases).await;
    still_serving(a, t).await;
}

// ---------------------------------------------------------------------------------------
// File names
// ---------------------------------------------------------------------------------------

/// The answer repeats no markup the client sent.
fn no_echo<'a>(_: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let text = answer.text();
        assert!(!text.contains('<'), "the answer echoes markup: {text}");
    })
}

/// Every blob sits at `{identifier}/{id}` or `{identifier}/{id}.thumb`, with ids of our own
/// alphabet, and the answer does not carry the name sent.
fn safe_keys<'a>(app: &'a TestApp, answer: &'a Answer) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let text = answer.text();
        for marker in ["passwd", "onerror", "<", "\u{202E}", "nnnnnnnn", "evil"] {
            assert!(
                !text.contains(marker),
                "the answer echoes {marker:?}: {text}"
            );
        }
        let image = &answer.json()["images"][0];
        let (identifier, id) = (
            image["identifier"].as_str().expect("identifier"),
            image["id"].as_str().expect("id"),
        );
        let root = app.dir.path().join("blobs");
        for key in [
            format!("{identifier}/{id}"),
            format!("{identifier}/{id}.thumb"),
        ] {
            assert!(root.join(&key).is_file(), "{key} is stored");
        }
        let ours = |name: &str| {
            let name = name.strip_suffix(".thumb").unwrap_or(name);
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        for folder in std::fs::read_dir(&root).expect("blob root").flatten() {
            assert!(ours(&folder.file_name().to_string_lossy()));
            for blob in std::fs::read_dir(folder.path()).expect("folder").flatten() {
                assert!(
                    ours(&blob.file_name().to_string_lossy()),
                    "{:?}",
                    blob.path()
                );
            }
        }
    })
}

#[tokio::test]
async fn hostile_file_names() {
    let (app, t) = group(limit).await;
    let (a, t) = (&app, &t);
    let photo = || jpeg(24, 24);
    let long = "n".repeat(10_000) + ".jpg";
    #[rustfmt::skip]
    let cases = vec![
        created("../../etc/passwd.jpg", files(a, t, &[("../../etc/passwd.jpg", photo())]), safe_keys),
        created("../ raw in the header", multipart(a, t, closed(file_part(b"../../../etc/passwd", &photo()))), safe_keys),
        created("RTLO (U+202E)", files(a, t, &[("photo\u{202E}gpj.exe", photo())]), safe_keys),
        created("RTLO raw in the header", multipart(a, t, closed(file_part("evil\u{202E}gpj.exe".as_bytes(), &photo()))), safe_keys),
        created("10 KB of text", files(a, t, &[(long.as_str(), photo())]), safe_keys),
        created("HTML", files(a, t, &[("<img src=x onerror=alert(1)>.jpg", photo())]), safe_keys),
        created("HTML raw in the header", multipart(a, t, closed(file_part(b"<img src=x onerror=alert(1)>.jpg", &photo()))), safe_keys),
        created("percent-encoded NUL", multipart(a, t, closed(file_part(b"evil%00.jpg", &photo()))), safe_keys),
        case("a raw NUL byte", multipart(a, t, closed(file_part(b"evil\0.jpg", &photo()))), 400, "INVALID_ARGUMENT"),
    ];
    run(a, cases).await;
    still_serving(a, t).await;
}

// ---------------------------------------------------------------------------------------
// Identifiers, parameters and headers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_parameters() {
    let (app, t) = group(limit).await;
    let (a, t) = (&app, &t);
    let photo = jpeg(16, 16);
    let upload_to = |id: &str| {
        Attack::Http(
            post(a, t, id).multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(photo.clone()).file_name("a.jpg"),
            )),
        )
    };
    let upload_with = |header: &str, value: &[u8]| {
        let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("a.jpg"),
        );
        Attack::Http(
            a.client
                .post(a.url(&images_path(&t.id)))
                .header(header, value)
                .multipart(form),
        )
    };
    let watch = |member_id: &str| {
        sse(
            a,
            &format!(
                "event=upload_by_qr&member_id={member_id}&identifier={}",
                t.id
            ),
        )
    };
    let event = |event: &str| sse(a, &format!("event={event}&member_id=1&identifier={}", t.id));
    // Long, but inside the 8 KiB target the serve loop takes: the handlers' own checks.
    let digits = "9".repeat(7_000);
    let long_id = "A".repeat(7_000);
    let long_event = "e".repeat(7_000);
    let too_long = "9".repeat(10_000);
    let long_key = "k".repeat(10_000);
    let long_token = format!("Bearer {}", "t".repeat(10_000));

    #[rustfmt::skip]
    let cases = vec![
        // Identifiers: malformed is the same 404 as unknown.
        case("identifier in Unicode", upload_to("%C3%A9t%C3%A9"), 404, "NOT_FOUND"),
        case("identifier ' OR 1=1 --", upload_to("%27%20OR%201%3D1%20--"), 404, "NOT_FOUND"),
        case("identifier %27", upload_to("%2527"), 404, "NOT_FOUND"),
        case("identifier ;DROP TABLE images", upload_to("%3BDROP%20TABLE%20images"), 404, "NOT_FOUND"),
        case("identifier of 7,000 chars", upload_to(&long_id), 404, "NOT_FOUND"),
        case("identifier of 10,000 chars", upload_to(&too_long), 414, "URI_TOO_LONG"),
        case("identifier with NUL", upload_to("%00"), 404, "NOT_FOUND"),
        case("identifier ../../etc", upload_to("..%2F..%2Fetc"), 404, "NOT_FOUND"),
        case("session identifier ' OR 1=1 --", get(a, "/v1/api/upload-sessions/%27%20OR%201%3D1%20--?member_id=1"), 404, "NOT_FOUND"),
        case("image id ../../qrupload.db", get(a, "/v1/api/images/..%2F..%2Fqrupload.db"), 404, "NOT_FOUND"),
        case("image id ..", get(a, "/v1/api/images/%2E%2E/thumbnail"), 404, "NOT_FOUND"),
        // member_id: an unsigned 32-bit integer or 400.
        case("member_id 4294967296", watch("4294967296"), 400, "INVALID_ARGUMENT"),
        case("member_id of 7,000 digits", watch(&digits), 400, "INVALID_ARGUMENT"),
        case("member_id of 10,000 digits", watch(&too_long), 414, "URI_TOO_LONG"),
        case("member_id -1", watch("-1"), 400, "INVALID_ARGUMENT"),
        case("member_id +1", watch("%2B1"), 400, "INVALID_ARGUMENT"),
        case("member_id empty", watch(""), 400, "INVALID_ARGUMENT"),
        case("member_id 1 OR 1=1", watch("1%20OR%201%3D1"), 400, "INVALID_ARGUMENT"),
        case("member_id %27", watch("%27"), 400, "INVALID_ARGUMENT"),
        case("member_id in Arabic-Indic digits", watch("%D9%A1"), 400, "INVALID_ARGUMENT"),
        case("member_id missing", sse(a, &format!("event=upload_by_qr&identifier={}", t.id)), 400, "INVALID_ARGUMENT"),
        case("member_id ;DROP TABLE on complete", Attack::Http(a.client.post(a.url(&format!("/v1/api/upload-sessions/{}/complete?member_id=1%3BDROP%20TABLE%20images", t.id)))), 400, "INVALID_ARGUMENT"),
        case("member_id overflow on delete", Attack::Http(a.client.delete(a.url(&format!("/v1/api/upload-sessions/{}/images/AAAAAAAAAAAAAAAAAAAAAA?member_id=4294967296", t.id)))), 400, "INVALID_ARGUMENT"),
        // SSE identifier and event name.
        case("SSE identifier missing", sse(a, "event=upload_by_qr&member_id=1"), 400, "INVALID_ARGUMENT"),
        case("SSE identifier empty", sse(a, "event=upload_by_qr&member_id=1&identifier="), 400, "INVALID_ARGUMENT"),
        case("SSE identifier ' OR 1=1 --", sse(a, "event=upload_by_qr&member_id=1&identifier=%27%20OR%201%3D1%20--"), 404, "NOT_FOUND"),
        case("event with CR/LF", event("a%0D%0Adata:x"), 400, "INVALID_ARGUMENT"),
        case("event empty", event(""), 400, "INVALID_ARGUMENT"),
        case("event of 65 chars", event(&"e".repeat(65)), 400, "INVALID_ARGUMENT"),
        case("event of 7 KB", event(&long_event), 400, "INVALID_ARGUMENT"),
        case("event of 10 KB", event(&too_long), 414, "URI_TOO_LONG"),
        // Idempotency-Key.
        case("Idempotency-Key of 10 KB", upload_with_auth(a, t, "idempotency-key", long_key.as_bytes(), &photo), 400, "INVALID_ARGUMENT"),
        case("Idempotency-Key with a tab", upload_with_auth(a, t, "idempotency-key", b"a\tb", &photo), 400, "INVALID_ARGUMENT"),
        case("Idempotency-Key with non-ASCII bytes", upload_with_auth(a, t, "idempotency-key", b"k\xff\xfe", &photo), 400, "INVALID_ARGUMENT"),
        case("Idempotency-Key empty", upload_with_auth(a, t, "idempotency-key", b"", &photo), 400, "INVALID_ARGUMENT"),
        // Tokens: none is 401; a wrong one the same 404 as an unknown session.
        case("no Authorization", Attack::Http(a.client.post(a.url(&images_path(&t.id))).body("x")), 401, "UNAUTHENTICATED"),
        case("Basic scheme", upload_with("authorization", b"Basic dXNlcjpwYXNz"), 401, "UNAUTHENTICATED"),
        case("Bearer with nothing", upload_with("authorization", b"Bearer "), 401, "UNAUTHENTICATED"),
        case("wrong token", upload_with("authorization", b"Bearer wrong"), 404, "NOT_FOUND"),
        case("token of 10 KB", upload_with("authorization", long_token.as_bytes()), 404, "NOT_FOUND"),
        case("token ' OR 1=1 --", upload_with("authorization", b"Bearer ' OR 1=1 --"), 404, "NOT_FOUND"),
        case("token with non-ASCII bytes", upload_with("authorization", b"Bearer \xff\xfe"), 401, "UNAUTHENTICATED"),
    ];
    run(a, cases).await;
    still_serving(a, t).await;
}

/// An upload with the group's token and one more header, raw bytes allowed.
fn upload_with_auth(app: &TestApp, t: &Target, header: &str, value: &[u8], photo: &[u8]) -> Attack {
    let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(photo.to_vec()).file_name("a.jpg"),
    );
    Attack::Http(post(app, t, &t.id).header(header, value).multipart(form))
}

// ---------------------------------------------------------------------------------------
// gRPC UploadImage
// ---------------------------------------------------------------------------------------

type Messages = futures::stream::BoxStream<'static, pb::UploadImageRequest>;

fn metadata(identifier: &str) -> pb::UploadImageRequest {
    metadata_as(1, identifier, "")
}

fn metadata_as(member_id: u32, identifier: &str, idempotency_key: &str) -> pb::UploadImageRequest {
    pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Metadata(
            pb::UploadImageMetadata {
                member_id,
                identifier: identifier.to_owned(),
                filename: "../../etc/passwd".into(),
                idempotency_key: idempotency_key.to_owned(),
            },
        )),
    }
}

fn chunk(bytes: Vec<u8>) -> pb::UploadImageRequest {
    pb::UploadImageRequest {
        payload: Some(pb::upload_image_request::Payload::Chunk(bytes)),
    }
}

fn messages(list: Vec<pb::UploadImageRequest>) -> Messages {
    futures::stream::iter(list).boxed()
}

#[tokio::test]
async fn hostile_grpc_upload_streams() {
    let (app, t) = group(|c| {
        limit(c);
        c.upload.stream_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut client = app.grpc_client().await;
    let photo = jpeg(16, 16);

    // 100 MB in 1 MiB chunks, each made only when the transport asks for it.
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let flood = futures::stream::iter(std::iter::once(metadata(&t.id)))
        .chain(futures::stream::iter(0..100).map(move |_| {
            counter.fetch_add(1 << 20, Ordering::SeqCst);
            chunk(vec![0xAB; 1 << 20])
        }))
        .boxed();
    let silent_after_metadata = futures::stream::iter([metadata(&t.id)])
        .chain(futures::stream::pending())
        .boxed();

    #[rustfmt::skip]
    let cases: Vec<(&str, Messages, Code)> = vec![
        ("first message a chunk", messages(vec![chunk(photo.clone()), metadata(&t.id)]), Code::InvalidArgument),
        ("metadata twice", messages(vec![metadata(&t.id), metadata(&t.id), chunk(photo.clone())]), Code::InvalidArgument),
        ("identifier empty", messages(vec![metadata(""), chunk(photo.clone())]), Code::InvalidArgument),
        ("identifier ' OR 1=1 --", messages(vec![metadata("' OR 1=1 --"), chunk(photo.clone())]), Code::NotFound),
        ("identifier of 10,000 chars", messages(vec![metadata(&"A".repeat(10_000)), chunk(photo.clone())]), Code::NotFound),
        ("metadata and no chunk", messages(vec![metadata(&t.id)]), Code::InvalidArgument),
        ("another member's session", messages(vec![metadata_as(2, &t.id, ""), chunk(photo.clone())]), Code::NotFound),
        ("Idempotency-Key of 10 KB", messages(vec![metadata_as(1, &t.id, &"k".repeat(10_000)), chunk(photo.clone())]), Code::InvalidArgument),
        ("Idempotency-Key with control characters", messages(vec![metadata_as(1, &t.id, "a\r\nb"), chunk(photo.clone())]), Code::InvalidArgument),
        ("one chunk of 5 MiB", messages(vec![metadata(&t.id), chunk(vec![0xFF; 5 << 20])]), Code::ResourceExhausted),
        ("not an image", messages(vec![metadata(&t.id), chunk(PDF.to_vec())]), Code::InvalidArgument),
        ("100 MB of chunks", flood, Code::ResourceExhausted),
        ("silent after the metadata", silent_after_metadata, Code::DeadlineExceeded),
        ("silent from the start", futures::stream::pending().boxed(), Code::DeadlineExceeded),
    ];
    for (name, stream, code) in cases {
        let rows = app.image_rows().await;
        let blobs = app.blob_count();
        let status = tokio::time::timeout(Duration::from_secs(60), client.upload_image(stream))
            .await
            .unwrap_or_else(|_| panic!("{name}: the server ends the stream"))
            .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert_eq!(
            app.image_rows().await,
            rows,
            "{name}: image rows left behind"
        );
        assert_eq!(
            blobs_settle(&app, blobs).await,
            blobs,
            "{name}: blobs left behind"
        );
    }
    let produced = produced.load(Ordering::SeqCst);
    assert!(
        produced < 32 << 20,
        "the flood was cut off early ({produced} bytes produced of 100 MB)"
    );

    // Still serving, over gRPC too.
    let image = client
        .upload_image(messages(vec![metadata(&t.id), chunk(photo)]))
        .await
        .expect("a normal gRPC upload")
        .into_inner();
    assert_eq!((image.width, image.height), (16, 16));
    assert_eq!(app.image_rows().await, 1);
    still_serving(&app, &t).await;
}
