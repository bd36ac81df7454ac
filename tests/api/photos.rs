//! Real photos through the service: what it stores for each file of `tests/fixtures/images`
//! (and for damaged copies cut from them) against an independent decoder's view of the
//! original. The `image` crate decodes JPEG, PNG and WebP; libheif's `heif-convert` decodes
//! HEIC (skipped when absent, unless `CI` is set, where its absence fails the test).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use qrupload::api::image::v1 as pb;
use serde_json::Value;

use crate::helpers::TestApp;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Uploads one file and returns its Image JSON, the stored bytes and the thumbnail.
async fn store(app: &TestApp, name: &str, bytes: Vec<u8>) -> (Value, Vec<u8>, Vec<u8>) {
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let res = app.upload(id, &token, vec![(name, bytes)], None).await;
    let status = res.status();
    let body: Value = res.json().await.expect("upload JSON");
    assert_eq!(status, 201, "{name}: {body}");
    let image = body["images"][0].clone();
    let mut blobs = Vec::new();
    for key in ["url", "thumbnail_url"] {
        let res = app
            .client
            .get(app.url(image[key].as_str().expect("url")))
            .send()
            .await
            .expect("download");
        assert_eq!(res.status(), 200, "{name}: {key}");
        blobs.push(res.bytes().await.expect("body").to_vec());
    }
    let thumbnail = blobs.pop().expect("thumbnail");
    let stored = blobs.pop().expect("stored");
    (image, stored, thumbnail)
}

/// Whether a Debian tool is there; in CI it must be.
fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--help").output().is_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{name} is missing in CI (.ci/run installs it)"
    );
    found
}

/// A file name of its own: the tests of this module run at the same time.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("qrupload-photos-{}-{n}-{name}", std::process::id()))
}

/// libheif's reference decoder, through `heif-convert`, as 8-bit RGB: the exact decode
/// (PNG), and libheif's own JPEG conversion at the rendition's quality, to measure how much
/// of the difference any JPEG at that quality has.
fn heif_convert(bytes: &[u8]) -> (RgbImage, RgbImage) {
    let input = scratch("in.heic");
    std::fs::write(&input, bytes).expect("write input");
    let mut out = Vec::new();
    for (name, args) in [("out.png", &[][..]), ("out.jpg", &["-q", "90"][..])] {
        let output = scratch(name);
        let ran = Command::new("heif-convert")
            .args(args)
            .arg(&input)
            .arg(&output)
            .output()
            .expect("heif-convert runs");
        assert!(ran.status.success(), "heif-convert failed: {ran:?}");
        out.push(
            image::open(&output)
                .expect("heif-convert's output")
                .to_rgb8(),
        );
        let _ = std::fs::remove_file(output);
    }
    let _ = std::fs::remove_file(input);
    let jpeg = out.pop().expect("jpeg");
    (out.pop().expect("png"), jpeg)
}

/// Mean absolute difference per sample, on the 0..=255 scale.
fn mean_difference(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Peak signal-to-noise ratio in dB, over all samples.
fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let squared: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2))
        .sum();
    let mse = squared as f64 / a.as_raw().len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(f64::MIN_POSITIVE)).log10()
}

/// The embedded ICC profile, as the `image` crate reads it.
fn icc(bytes: &[u8]) -> Option<Vec<u8>> {
    ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?
        .icc_profile()
        .ok()
        .flatten()
}

/// Decodes with the `image` crate and applies the file's own EXIF orientation: what a
/// browser shows.
fn displayed(bytes: &[u8]) -> RgbImage {
    let mut decoder = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .expect("format")
        .into_decoder()
        .expect("decoder");
    let orientation = decoder.orientation().expect("orientation");
    let mut img = DynamicImage::from_decoder(decoder).expect("decodes whole");
    img.apply_orientation(orientation);
    img.to_rgb8()
}

#[tokio::test]
async fn heic_is_stored_as_a_jpeg_rendition_and_says_what_came_in() {
    let app = TestApp::spawn().await;
    let original = fixture("iphone_11_pro_max.heic");
    let (image, stored, thumbnail) = store(&app, "IMG_5195.HEIC", original.clone()).await;
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(image["source_content_type"], "image/heic");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(2566), Some(3313))
    );
    let ours = displayed(&stored);
    assert_eq!(ours.dimensions(), (2566, 3313));
    assert_eq!(displayed(&thumbnail).dimensions(), (248, 320));
    if tool("heif-convert") {
        let (exact, libheif_jpeg) = heif_convert(&original);
        let diff = mean_difference(&ours, &exact);
        let floor = mean_difference(&libheif_jpeg, &exact);
        assert!(
            diff <= floor + 0.5,
            "mean difference {diff:.3}/255 from libheif, whose own JPEG has {floor:.3}"
        );
    }

    // gRPC says the same.
    let mut client = app.grpc_client().await;
    let listed = client
        .get_images_by_identifier(pb::GetImagesByIdentifierRequest {
            member_id: 1,
            identifier: image["identifier"].as_str().expect("identifier").to_owned(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.images[0].content_type, "image/jpeg");
    assert_eq!(listed.images[0].source_content_type, "image/heic");

    // Other formats: the source type is the stored type.
    let (image, _, _) = store(&app, "DSCN0010.jpg", fixture("nikon_gps_DSCN0010.jpg")).await;
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(image["source_content_type"], "image/jpeg");
}

/// What an original should look like once stored.
enum Reference {
    /// The `image` crate's decode of these bytes, EXIF orientation applied.
    Decoded(Vec<u8>),
    /// libheif's decode of these bytes.
    Libheif(Vec<u8>),
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    reference: Reference,
    content_type: &'static str,
    source_content_type: &'static str,
}

fn case(name: &'static str, content_type: &'static str) -> Case {
    let bytes = fixture(name);
    let heif = name.ends_with(".heic") || name.ends_with(".heif");
    Case {
        name,
        reference: if heif {
            Reference::Libheif(bytes.clone())
        } else {
            Reference::Decoded(bytes.clone())
        },
        bytes,
        content_type,
        source_content_type: content_type,
    }
}

fn heif_case(name: &'static str) -> Case {
    Case {
        source_content_type: "image/heic",
        ..case(name, "image/jpeg")
    }
}

/// A damaged copy, expected to be stored as the undamaged file would be.
fn damaged(
    name: &'static str,
    of: &'static str,
    content_type: &'static str,
    damage: impl FnOnce(&mut Vec<u8>),
) -> Case {
    let original = fixture(of);
    let mut bytes = original.clone();
    damage(&mut bytes);
    assert_ne!(bytes, original, "{name}: no damage done");
    Case {
        name,
        bytes,
        reference: Reference::Decoded(original),
        content_type,
        source_content_type: content_type,
    }
}

fn insert(bytes: &mut Vec<u8>, at: usize, what: &[u8]) {
    bytes.splice(at..at, what.iter().copied());
}

/// Start of each PNG chunk of `kind`.
fn png_chunks(b: &[u8], kind: &[u8; 4]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 8 <= b.len() {
        let len = u32::from_be_bytes(b[pos..pos + 4].try_into().expect("4")) as usize;
        if &b[pos + 4..pos + 8] == kind {
            out.push(pos);
        }
        pos += 12 + len;
    }
    out
}

fn flip_png_crc(b: &mut [u8], kind: &[u8; 4]) {
    let at = png_chunks(b, kind)[0];
    let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4")) as usize;
    b[at + 8 + len] ^= 0x5A;
}

fn cases() -> Vec<Case> {
    vec![
        heif_case("iphone_11_pro_max.heic"),
        heif_case("iphone_11_pro_12mp.heic"),
        heif_case("samplefilehub.heif"),
        heif_case("nikon_gps.heic"),
        heif_case("jolla_10bit.heic"),
        heif_case("exif_orientation_6.heic"),
        // `imir` alone, and `irot` then `imir`, added to a heif-enc file by
        // scripts/heif_transform.py.
        heif_case("jolla_imir.heic"),
        heif_case("jolla_irot_imir.heic"),
        case("nikon_gps_DSCN0010.jpg", "image/jpeg"),
        case("jolla_phone.jpg", "image/jpeg"),
        case("orientation_portrait_6.jpg", "image/jpeg"),
        case("orientation_landscape_3.jpg", "image/jpeg"),
        case("orientation_landscape_5.jpg", "image/jpeg"),
        case("jolla_restart_interval.jpg", "image/jpeg"),
        case("jolla_progressive.jpg", "image/jpeg"),
        // Lossy and turned: stored as an upright JPEG rendition.
        Case {
            source_content_type: "image/webp",
            ..case("exif_orientation_6.webp", "image/jpeg")
        },
        case("exif_orientation_6.png", "image/png"),
        // libjpeg-turbo skips bytes before a marker, with a warning.
        damaged(
            "garbage before DQT",
            "nikon_gps_DSCN0010.jpg",
            "image/jpeg",
            |b| insert(b, 11262, b"\x00\x13\x37"),
        ),
        damaged(
            "stray bytes after SOI",
            "orientation_portrait_6.jpg",
            "image/jpeg",
            |b| insert(b, 2, b"\x00\x00\x0a"),
        ),
        // libjpeg-turbo ignores an APP14 shorter than its 12 bytes.
        damaged("short APP14", "jolla_phone.jpg", "image/jpeg", |b| {
            insert(b, 2, b"\xFF\xEE\x00\x07Adobe")
        }),
        // Two restart markers swapped: numbered out of sequence, data intact.
        damaged(
            "restart markers out of sequence",
            "jolla_restart_interval.jpg",
            "image/jpeg",
            |b| {
                let rst: Vec<usize> = (615..b.len() - 1)
                    .filter(|&i| b[i] == 0xFF && (0xD0..=0xD7).contains(&b[i + 1]))
                    .collect();
                let (x, y) = (rst[10] + 1, rst[11] + 1);
                b.swap(x, y);
            },
        ),
        // libjpeg renders every pixel of a file that lacks only its EOI.
        damaged("EOI missing", "jolla_phone.jpg", "image/jpeg", |b| {
            b.truncate(b.len() - 2)
        }),
        // Progressive: the last scan is left out, what is left differs little.
        damaged(
            "progressive, EOI missing",
            "jolla_progressive.jpg",
            "image/jpeg",
            |b| b.truncate(b.len() - 2),
        ),
        damaged(
            "PNG ancillary chunk with a bad CRC",
            "exif_orientation_6.png",
            "image/png",
            |b| flip_png_crc(b, b"pHYs"),
        ),
        damaged(
            "PNG iCCP with an unknown compression",
            "exif_orientation_6.png",
            "image/png",
            |b| {
                let at = png_chunks(b, b"iCCP")[0];
                let nul = at + 8 + b[at + 8..].iter().position(|&c| c == 0).expect("keyword");
                b[nul + 1] = 7;
                let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4")) as usize;
                let crc = crc32fast::hash(&b[at + 4..at + 8 + len]);
                b[at + 8 + len..at + 12 + len].copy_from_slice(&crc.to_be_bytes());
            },
        ),
        damaged(
            "PNG IDAT with a bad CRC",
            "exif_orientation_6.png",
            "image/png",
            |b| flip_png_crc(b, b"IDAT"),
        ),
    ]
}

/// Checks that nothing but rendering data is left: for a JPEG, at most an orientation-only
/// EXIF and no XMP, IPTC or comment; for PNG and WebP, no EXIF, XMP or text chunk.
fn assert_no_metadata(name: &str, content_type: &str, stored: &[u8]) {
    match content_type {
        "image/jpeg" => {
            if let Some(tags) = crate::helpers::exif_ifd0(stored) {
                assert!(
                    tags.len() == 1 && tags[0].0 == 0x0112,
                    "{name}: EXIF beyond the orientation: {tags:?}"
                );
            }
            assert!(
                !crate::helpers::has_other_metadata(stored),
                "{name}: XMP, IPTC or a comment kept"
            );
        }
        "image/png" => {
            for kind in [b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"] {
                assert!(png_chunks(stored, kind).is_empty(), "{name}: {kind:?} kept");
            }
        }
        "image/webp" => {
            for kind in [&b"EXIF"[..], b"XMP "] {
                assert!(
                    !stored.windows(4).any(|w| w == kind),
                    "{name}: {kind:?} chunk kept"
                );
            }
        }
        other => panic!("{name}: stored as {other}"),
    }
}

/// The independent Debian decoder for the stored type, when present: it must decode the
/// stored copy whole and without a single warning.
fn assert_tool_decodes_cleanly(name: &str, content_type: &str, stored: &[u8]) {
    let (tool_name, args): (&str, &[&str]) = match content_type {
        "image/jpeg" => ("djpeg", &["-outfile", "/dev/null"]),
        "image/webp" => ("dwebp", &["-quiet", "-o", "/dev/null"]),
        _ => return,
    };
    if !tool(tool_name) {
        return;
    }
    let input = scratch("stored");
    std::fs::write(&input, stored).expect("write");
    let mut command = Command::new(tool_name);
    if tool_name == "dwebp" {
        command.arg(&input).args(args);
    } else {
        command.args(args).arg(&input);
    }
    let ran = command.output().expect("runs");
    let _ = std::fs::remove_file(&input);
    assert!(
        ran.status.success(),
        "{name}: {tool_name} fails on the stored copy: {ran:?}"
    );
    assert!(
        ran.stderr.is_empty(),
        "{name}: {tool_name} warns on the stored copy: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

#[tokio::test]
async fn every_real_photo_is_stored_upright_whole_and_without_metadata() {
    let app = TestApp::spawn().await;
    let heif_convert_here = tool("heif-convert");
    let mut report = Vec::new();
    for c in cases() {
        let (image, stored, thumbnail) = store(&app, c.name, c.bytes.clone()).await;
        assert_eq!(image["content_type"], c.content_type, "{}", c.name);
        assert_eq!(
            image["source_content_type"], c.source_content_type,
            "{}",
            c.name
        );
        let reported = (
            image["width"].as_u64().expect("width") as u32,
            image["height"].as_u64().expect("height") as u32,
        );

        // The stored copy decodes whole, upright, at the reported size.
        let ours = displayed(&stored);
        assert_eq!(ours.dimensions(), reported, "{}: stored size", c.name);
        assert_no_metadata(c.name, c.content_type, &stored);

        // Colour: a copy keeps the original's profile, and the thumbnail carries it too.
        let stored_icc = icc(&stored);
        if matches!(&c.reference, Reference::Decoded(original) if *original == c.bytes) {
            assert_eq!(
                stored_icc,
                icc(&c.bytes),
                "{}: ICC profile of the copy",
                c.name
            );
        }
        assert_eq!(
            icc(&thumbnail),
            stored_icc,
            "{}: ICC profile of the thumbnail",
            c.name
        );
        if c.name.starts_with("iphone") {
            assert!(
                stored_icc.is_some(),
                "the iPhone's Display P3 profile is kept"
            );
        }
        assert_tool_decodes_cleanly(c.name, c.content_type, &stored);

        // A copy keeps its pixels (< 2/255 on average). A HEIF rendition is a new JPEG, whose
        // loss depends on the picture: it may differ by as much as libheif's own conversion
        // at the same quality, plus half a level.
        // A rendition is also held to a PSNR of 40 dB from libheif's decode, or to what
        // libheif's own JPEG at that quality reaches where that is lower (a busy picture).
        let reference = match &c.reference {
            Reference::Decoded(bytes) => Some((displayed(bytes), 2.0, None)),
            Reference::Libheif(bytes) => heif_convert_here.then(|| {
                let (exact, libheif_jpeg) = heif_convert(bytes);
                let floor = mean_difference(&libheif_jpeg, &exact);
                let least_psnr = psnr(&libheif_jpeg, &exact).min(40.0);
                (exact, (floor + 0.5).max(2.0), Some(least_psnr))
            }),
        };
        if let Some((reference, bound, least_psnr)) = reference {
            assert_eq!(
                reference.dimensions(),
                reported,
                "{}: displayed size",
                c.name
            );
            let diff = mean_difference(&ours, &reference);
            let psnr = psnr(&ours, &reference);
            report.push(format!(
                "{}: {diff:.3} (bound {bound:.3}), PSNR {psnr:.2} dB",
                c.name
            ));
            if let Some(least) = least_psnr {
                assert!(
                    psnr >= least,
                    "{}: PSNR {psnr:.2} dB from libheif, below {least:.2}",
                    c.name
                );
            }
            assert!(diff < bound, "{}: mean difference {diff:.3}/255", c.name);

            // The thumbnail is the same picture, the same way up.
            let thumb = displayed(&thumbnail);
            let (tw, th) = thumb.dimensions();
            assert_eq!(
                tw.max(th),
                320.min(reported.0.max(reported.1)),
                "{}",
                c.name
            );
            let small =
                image::imageops::resize(&reference, tw, th, image::imageops::FilterType::Triangle);
            let diff = mean_difference(&thumb, &small);
            assert!(diff < 8.0, "{}: thumbnail differs by {diff:.3}/255", c.name);
        }
    }
    eprintln!(
        "mean differences from the reference, per sample of 255:\n{}",
        report.join("\n")
    );
}

/// libjpeg-turbo's decode of a JPEG as a PPM, and whether it warned.
fn djpeg(bytes: &[u8]) -> (Vec<u8>, bool) {
    let input = scratch("cut.jpg");
    std::fs::write(&input, bytes).expect("write");
    let ran = Command::new("djpeg")
        .arg(&input)
        .output()
        .expect("djpeg runs");
    let _ = std::fs::remove_file(&input);
    (ran.stdout, !ran.stderr.is_empty())
}

/// Where a JPEG is cut, and what the service answers.
struct Cut {
    name: &'static str,
    at: usize,
    /// libjpeg renders these with every pixel as the whole file has it.
    whole_in_djpeg: bool,
    accepted: bool,
}

/// Entropy-coded data of the first and the last scan: (start, end) by byte offset.
fn scans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 2;
    while i + 4 <= b.len() && b[i + 1] != 0xD9 {
        let m = b[i + 1];
        i += 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if m == 0xDA {
            let start = i;
            while b[i] != 0xFF || matches!(b[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                i += 1;
            }
            found.push((start, i));
        }
    }
    found
}

/// The cuts of the rule in the imaging module (`//!` "Cut short"), each checked against
/// libjpeg-turbo: a file that `djpeg` renders whole is accepted and stored pixel for pixel;
/// a baseline file cut inside its scan (djpeg warns "Premature end of JPEG file" and fills
/// the rest grey) is refused, and so is one cut in its headers (nothing renders); a
/// progressive file cut after its first scan keeps its complete scans.
#[tokio::test]
async fn cut_jpegs_are_answered_as_libjpeg_renders_them() {
    if !tool("djpeg") {
        return;
    }
    let app = TestApp::spawn().await;
    let files = [
        "nikon_gps_DSCN0010.jpg",
        "orientation_portrait_6.jpg",
        "jolla_phone.jpg",
        "jolla_restart_interval.jpg",
        "jolla_progressive.jpg",
    ];
    for name in files {
        let original = fixture(name);
        let (full, warned) = djpeg(&original);
        assert!(
            !warned && !full.is_empty(),
            "{name}: the whole file decodes"
        );
        let scans = scans(&original);
        let progressive = scans.len() > 1;
        let (first, last) = (scans[0], scans[scans.len() - 1]);
        let end = original.len() - 2;
        let mut cuts = vec![
            Cut {
                name: "EOI missing",
                at: end,
                whole_in_djpeg: true,
                accepted: true,
            },
            Cut {
                name: "last scan less one byte",
                at: last.1 - 1,
                whole_in_djpeg: false,
                accepted: progressive,
            },
            Cut {
                name: "middle of the last scan",
                at: (last.0 + last.1) / 2,
                whole_in_djpeg: false,
                accepted: progressive,
            },
            Cut {
                name: "middle of the first scan",
                at: (first.0 + first.1) / 2,
                whole_in_djpeg: false,
                accepted: false,
            },
            Cut {
                name: "right after the first SOS",
                at: first.0,
                whole_in_djpeg: false,
                accepted: false,
            },
            Cut {
                name: "inside the first SOS",
                at: first.0 - 4,
                whole_in_djpeg: false,
                accepted: false,
            },
            Cut {
                name: "inside the headers",
                at: 40,
                whole_in_djpeg: false,
                accepted: false,
            },
        ];
        if progressive {
            cuts.push(Cut {
                name: "between the first two scans",
                at: first.1,
                whole_in_djpeg: false,
                accepted: true,
            });
        }
        for cut in cuts {
            let bytes = original[..cut.at].to_vec();
            let (pixels, _) = djpeg(&bytes);
            assert_eq!(
                pixels == full,
                cut.whole_in_djpeg,
                "{name}, {}: djpeg renders it whole?",
                cut.name
            );
            let (session, token) = app.create_session(1).await;
            let id = session["identifier"].as_str().expect("identifier");
            let res = app.upload(id, &token, vec![(name, bytes)], None).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("JSON");
            if !cut.accepted {
                assert_eq!(status, 422, "{name}, {}: {body}", cut.name);
                assert_eq!(
                    body["reason"], "UNPROCESSABLE_IMAGE",
                    "{name}, {}",
                    cut.name
                );
                continue;
            }
            assert_eq!(status, 201, "{name}, {}: {body}", cut.name);
            let url = body["images"][0]["url"].as_str().expect("url");
            let stored = app
                .client
                .get(app.url(url))
                .send()
                .await
                .expect("download")
                .bytes()
                .await
                .expect("body")
                .to_vec();
            let (ours, warned) = djpeg(&stored);
            assert!(
                !warned,
                "{name}, {}: djpeg warns on the stored copy",
                cut.name
            );
            if !progressive {
                assert!(ours == full, "{name}, {}: stored pixel for pixel", cut.name);
            }
        }
    }
}

#[tokio::test]
async fn a_heic_that_repeats_one_tile_past_the_decode_budget_is_refused_and_leaves_nothing() {
    let app = TestApp::spawn().await;
    // One 512×512 tile listed 65,025 times over a 512×512 canvas: within every limit on
    // its face, far past the decode budget in what it asks for.
    let attack = qrupload::biz::imaging::testdata::heic_grid_of_one_tile(512, 0, 255, 255, 512);
    assert!(
        !attack.is_empty() && attack.len() < 200_000,
        "{} bytes",
        attack.len()
    );
    let (rows, blobs) = (app.image_rows().await, app.blob_count());
    let (session, token) = app.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let res = app
        .upload(id, &token, vec![("tiles.heic", attack)], None)
        .await;
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("error JSON");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "UNPROCESSABLE_IMAGE", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("pixels")),
        "{body}"
    );
    assert_eq!((app.image_rows().await, app.blob_count()), (rows, blobs));
}
