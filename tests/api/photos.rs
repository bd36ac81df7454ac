//! Real photos through the service: what it stores for each file of `tests/fixtures/images`
//! (and for damaged copies cut from them) against an independent decoder's view of the
//! original. The `image` crate decodes JPEG, PNG and WebP; libheif's `heif-convert` decodes
//! HEIC (skipped when absent, unless `CI` is set, where its absence fails the test).

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("qrupload-photos-{}-{name}", std::process::id()))
}

/// libheif's reference decoder, through `heif-convert`, as 8-bit RGB.
fn heif_convert(bytes: &[u8]) -> RgbImage {
    let (input, output) = (scratch("in.heic"), scratch("out.png"));
    std::fs::write(&input, bytes).expect("write input");
    let ran = Command::new("heif-convert")
        .arg(&input)
        .arg(&output)
        .output()
        .expect("heif-convert runs");
    assert!(ran.status.success(), "heif-convert failed: {ran:?}");
    let img = image::open(&output).expect("heif-convert's PNG").to_rgb8();
    let _ = (std::fs::remove_file(input), std::fs::remove_file(output));
    img
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
        let reference = heif_convert(&original);
        let diff = mean_difference(&ours, &reference);
        assert!(diff < 2.0, "mean difference {diff:.3}/255 from libheif");
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
