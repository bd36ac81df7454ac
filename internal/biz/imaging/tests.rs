//! Unit tests of the imaging pipeline.

use super::bytes::{be32, le32};
use super::exif::{EXIF_HEADER, IfdEntry, TAG_ORIENTATION, Tiff, exif_orientation};
use super::jpeg::{
    APP0, APP1, APP2, APP14, COM, EOI, SOI, SOS, jpeg_marker, jpeg_segment, write_jpeg_segment,
};
use super::jpeg_dc::ycbcr_to_rgb;
use super::jpeg_huffman::Huffman;
use super::testdata::*;
use super::thumbnail::{resize_area, shrink};
use super::webp::{VP8X_FLAG_EXIF, VP8X_FLAG_XMP};
use super::*;
use image::GenericImageView;
use std::time::{Duration, Instant};

fn limits() -> PixelLimits {
    PixelLimits::default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// (marker, payload) of every segment before the first SOS.
fn jpeg_segments(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let header = jpeg_header(b).expect("header");
    let mut out = Vec::new();
    let mut pos = 2;
    loop {
        let (marker, after) = jpeg_marker(b, pos).expect("marker");
        let seg = jpeg_segment(b, marker, after).expect("segment");
        out.push((marker, seg.bytes(b).to_vec()));
        pos = seg.payload.end;
        if marker == SOS {
            assert_eq!(pos, header.scan_start);
            return out;
        }
    }
}

fn png_chunk_types(b: &[u8]) -> Vec<String> {
    let mut pos = 8;
    let mut out = Vec::new();
    while let Some(len) = be32(b, pos) {
        out.push(String::from_utf8_lossy(&b[pos + 4..pos + 8]).into_owned());
        pos += 12 + len as usize;
    }
    out
}

fn webp_chunk_types(b: &[u8]) -> Vec<String> {
    let mut pos = 12;
    let mut out = Vec::new();
    while let Some(size) = le32(b, pos + 4) {
        out.push(String::from_utf8_lossy(&b[pos..pos + 4]).into_owned());
        pos += 8 + size as usize + (size as usize % 2);
    }
    out
}

fn decode(b: &[u8]) -> DynamicImage {
    image::load_from_memory(b).expect("decodes")
}

#[test]
fn detects_formats_from_magic_bytes() {
    assert_eq!(
        detect(&jpeg_with_exif(8, 8, 1, false)),
        Some(ImageFormat::Jpeg)
    );
    assert_eq!(detect(&small_png(4, 4)), Some(ImageFormat::Png));
    assert_eq!(detect(&small_gif(4, 4)), Some(ImageFormat::Gif));
    assert_eq!(detect(&small_webp(4, 4)), Some(ImageFormat::Webp));
    assert_eq!(detect(b"GIF87a\x01\x00\x01\x00"), Some(ImageFormat::Gif));
    for not_image in [
        &b"<!DOCTYPE html><html><body>hi</body></html>"[..],
        b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        b"<svg onload=alert(1)>",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"PK\x03\x04\x14\x00\x00\x00",
        b"MZ\x90\x00\x03\x00",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\xFF\xD8",
        b"\x89PNG",
        b"",
    ] {
        assert_eq!(detect(not_image), None, "{not_image:?}");
        assert!(matches!(
            process(not_image, &limits()),
            Err(ImagingError::Unsupported)
        ));
    }
}

#[test]
fn mime_types() {
    assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
    assert_eq!(ImageFormat::Png.mime(), "image/png");
    assert_eq!(ImageFormat::Webp.mime(), "image/webp");
    assert_eq!(ImageFormat::Gif.mime(), "image/gif");
}

#[test]
fn fixture_jpeg_carries_all_metadata() {
    let src = jpeg_with_exif(400, 300, 6, true);
    let markers: Vec<u8> = jpeg_segments(&src).iter().map(|s| s.0).collect();
    assert!(markers.starts_with(&[APP1, APP1, 0xED, COM]));
    assert!(contains(&src, SECRET.as_bytes()));
    let app1 = &jpeg_segments(&src)[0].1;
    let tiff = Tiff::new(&app1[6..]).expect("tiff");
    let tags: Vec<u16> = tiff.entries(tiff.ifd0().unwrap()).map(|e| e.tag).collect();
    assert_eq!(tags, vec![0x010F, 0x0112, 0x8825]);
    assert_eq!(exif_orientation(&app1[6..]), Some(6));
}

#[test]
fn jpeg_orientation_6_with_gps_is_cleaned() {
    let src = jpeg_with_exif(400, 300, 6, true);
    let clean = process(&src, &limits()).expect("processed");
    assert_eq!(clean.format, ImageFormat::Jpeg);
    assert_eq!((clean.width, clean.height), (300, 400));
    assert_eq!(clean.orientation, 6);

    let segments = jpeg_segments(&clean.bytes);
    let app1: Vec<_> = segments.iter().filter(|s| s.0 == APP1).collect();
    assert_eq!(app1.len(), 1, "exactly one APP1");
    let payload = &app1[0].1;
    assert!(payload.starts_with(EXIF_HEADER));
    let tiff = Tiff::new(&payload[6..]).expect("valid TIFF");
    let ifd0 = tiff.ifd0().unwrap();
    let entries: Vec<IfdEntry> = tiff.entries(ifd0).collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].tag, TAG_ORIENTATION);
    assert_eq!(tiff.u16(entries[0].value_at), Some(6));
    assert_eq!(tiff.next_ifd(ifd0), Some(0));
    assert!(payload.len() <= 32);

    for (marker, payload) in &segments {
        assert_ne!(*marker, 0xED, "APP13");
        assert_ne!(*marker, COM);
        assert!(!payload.starts_with(b"http://ns.adobe.com/xap"));
    }
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    assert!(!contains(&clean.bytes, b"SecretCam"));
    assert!(!contains(&clean.bytes, b"GPS"));
    let latitude: Vec<u8> = [48u32, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(contains(&src, &latitude));
    assert!(!contains(&clean.bytes, &latitude));

    // Scan data is copied verbatim, so the stored pixels are the originals.
    let original = decode(&src).to_rgb8();
    let stored = decode(&clean.bytes).to_rgb8();
    assert_eq!((stored.width(), stored.height()), (400, 300));
    assert_eq!(original, stored);
    let src_scan = jpeg_header(&src).unwrap().scan_start;
    let out_scan = jpeg_header(&clean.bytes).unwrap().scan_start;
    assert_eq!(src[src_scan..], clean.bytes[out_scan..]);

    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (240, 320));
    let thumb = decode(&clean.thumbnail).to_rgb8();
    assert_eq!((thumb.width(), thumb.height()), (240, 320));
    // The fixture is red at the top; orientation 6 turns the top to the right.
    let right = thumb.get_pixel(235, 160);
    let left = thumb.get_pixel(4, 160);
    assert!(right.0[0] > right.0[2] + 60, "right {right:?}");
    assert!(left.0[2] > left.0[0] + 60, "left {left:?}");
}

#[test]
fn jpeg_orientation_1_has_no_app1() {
    let src = jpeg_with_exif(400, 300, 1, true);
    let clean = process(&src, &limits()).unwrap();
    assert_eq!((clean.width, clean.height), (400, 300));
    assert_eq!(clean.orientation, 1);
    let segments = jpeg_segments(&clean.bytes);
    assert!(segments.iter().all(|s| s.0 != APP1));
    assert!(!contains(&clean.bytes, b"Exif"));
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (320, 240));
    let thumb = decode(&clean.thumbnail).to_rgb8();
    let top = thumb.get_pixel(160, 4);
    assert!(top.0[0] > top.0[2] + 60, "top {top:?}");
}

#[test]
fn jpeg_without_orientation_tag_counts_as_upright() {
    let clean = process(&jpeg_with_exif(64, 32, 0, true), &limits()).unwrap();
    assert_eq!((clean.width, clean.height, clean.orientation), (64, 32, 1));
    assert!(!contains(&clean.bytes, b"Exif"));
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (64, 32));
}

#[test]
fn jpeg_orientation_3_keeps_dimensions() {
    let clean = process(&jpeg_with_exif(64, 32, 3, false), &limits()).unwrap();
    assert_eq!((clean.width, clean.height, clean.orientation), (64, 32, 3));
    let thumb = decode(&clean.thumbnail).to_rgb8();
    let bottom = thumb.get_pixel(32, 30);
    assert!(bottom.0[0] > bottom.0[2] + 60, "rotated 180: {bottom:?}");
}

#[test]
fn every_orientation_gives_upright_thumbnail_size() {
    for o in 1..=8u16 {
        let clean = process(&jpeg_with_exif(80, 40, o, true), &limits()).unwrap();
        let expect = if o >= 5 { (40, 80) } else { (80, 40) };
        assert_eq!((clean.width, clean.height), expect, "orientation {o}");
        assert_eq!((clean.thumbnail_width, clean.thumbnail_height), expect);
        let thumb = decode(&clean.thumbnail);
        assert_eq!((thumb.width(), thumb.height()), expect);
    }
}

#[test]
fn exif_orientation_reads_both_byte_orders() {
    for be in [false, true] {
        for o in 1..=8 {
            assert_eq!(exif_orientation(&exif_tiff(o, true, be)), Some(o));
        }
        assert_eq!(exif_orientation(&exif_tiff(0, true, be)), None);
        assert_eq!(exif_orientation(&exif_tiff(9, false, be)), None);
    }
    assert_eq!(exif_orientation(b""), None);
    assert_eq!(exif_orientation(b"MM\0\x2a\xff\xff\xff\xff"), None);
    assert_eq!(exif_orientation(b"II\x2a\0\x08\0\0\0\xff\xff"), None);
    let tiff = exif_tiff(6, true, true);
    for cut in 0..tiff.len() {
        let _ = exif_orientation(&tiff[..cut]);
    }
}

#[test]
fn big_endian_exif_in_jpeg_is_honoured() {
    let src = jpeg_with_exif(40, 20, 1, false);
    let mut exif = EXIF_HEADER.to_vec();
    exif.extend(exif_tiff(8, true, true));
    let mut spliced = src[..2].to_vec();
    write_jpeg_segment(&mut spliced, APP1, &exif).unwrap();
    spliced.extend_from_slice(&src[2..]);
    let clean = process(&spliced, &limits()).unwrap();
    assert_eq!((clean.width, clean.height, clean.orientation), (20, 40, 8));
}

#[test]
fn jpeg_drops_trailing_data_and_other_app_segments() {
    let src = jpeg_with_exif(32, 32, 1, true);
    let mut mpf = b"MPF\0".to_vec();
    mpf.extend_from_slice(SECRET.as_bytes());
    let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
    icc.extend_from_slice(&[0u8; 16]);
    let mut jfxx = b"JFXX\0\x10".to_vec();
    jfxx.extend_from_slice(SECRET.as_bytes());
    let mut with = src[..2].to_vec();
    write_jpeg_segment(&mut with, APP2, &mpf).unwrap();
    write_jpeg_segment(&mut with, APP2, &icc).unwrap();
    write_jpeg_segment(&mut with, APP14, b"Adobe\0\x64\0\0\0\0\x01").unwrap();
    write_jpeg_segment(&mut with, 0xE5, SECRET.as_bytes()).unwrap();
    write_jpeg_segment(&mut with, APP0, &jfxx).unwrap();
    with.extend_from_slice(&src[2..]);
    with.extend_from_slice(b"PK\x03\x04");
    with.extend(jpeg_with_exif(16, 16, 3, true));

    let clean = process(&with, &limits()).unwrap();
    assert!(clean.bytes.ends_with(&[0xFF, EOI]));
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    assert!(!contains(&clean.bytes, b"PK\x03\x04"));
    let kept: Vec<u8> = jpeg_segments(&clean.bytes).iter().map(|s| s.0).collect();
    assert!(kept.contains(&APP2));
    assert!(kept.contains(&APP14));
    assert!(kept.contains(&APP0));
    assert!(!kept.contains(&0xE5));
    assert_eq!(decode(&clean.bytes).width(), 32);
}

#[test]
fn jfif_thumbnail_is_removed() {
    let src = jpeg_with_exif(16, 16, 1, false);
    let mut jfif = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x02\x01".to_vec();
    jfif.extend_from_slice(&[0xAB; 6]);
    let mut with = src[..2].to_vec();
    write_jpeg_segment(&mut with, APP0, &jfif).unwrap();
    with.extend_from_slice(&src[2..]);
    let clean = process(&with, &limits()).unwrap();
    let app0 = jpeg_segments(&clean.bytes)
        .into_iter()
        .find(|s| s.0 == APP0)
        .unwrap();
    assert_eq!(app0.1, b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x00\x00");
}

#[test]
fn jpeg_with_megabytes_of_app1_is_cleaned() {
    let src = jpeg_with_exif(64, 48, 6, true);
    let mut big = src[..2].to_vec();
    let filler = vec![0x41u8; 65_000];
    for _ in 0..80 {
        write_jpeg_segment(&mut big, APP1, &filler).unwrap();
    }
    big.extend_from_slice(&src[2..]);
    assert!(big.len() > 5_000_000);
    let clean = process(&big, &limits()).unwrap();
    assert!(clean.bytes.len() < src.len());
    assert_eq!((clean.width, clean.height, clean.orientation), (48, 64, 6));
}

#[test]
fn progressive_style_segments_between_scans_are_handled() {
    let src = jpeg_with_exif(32, 32, 1, false);
    let eoi = src.len() - 2;
    let mut with = src[..eoi].to_vec();
    write_jpeg_segment(&mut with, COM, SECRET.as_bytes()).unwrap();
    with.extend_from_slice(&src[eoi..]);
    let clean = process(&with, &limits()).unwrap();
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
}

#[test]
fn malformed_jpegs_are_rejected() {
    let bad = |b: &[u8]| match process(b, &limits()) {
        Err(ImagingError::Corrupt(_) | ImagingError::Unsupported) => {}
        other => panic!("expected rejection, got {other:?}"),
    };
    let src = jpeg_with_exif(64, 48, 6, true);
    bad(&src[..src.len() / 2]);
    // Only the EOI missing is not malformed: libjpeg renders every pixel (lenient_tests).
    assert!(process(&src[..src.len() - 2], &limits()).is_ok());
    bad(b"\xFF\xD8\xFF");
    bad(b"\xFF\xD8\xFF\xFF\xFF\xFF");
    bad(b"\xFF\xD8\xFF\xD9");
    bad(b"\xFF\xD8\xFF\xE1\xFF\xFF\x00\x00");
    bad(b"\xFF\xD8\xFF\xE1\x00\x01");
    bad(b"\xFF\xD8\xFF\xE1\x00\x00");
    bad(b"\xFF\xD8\xFF\xDA\x00\x08\x01\x01\x00\x00\x3f\x00");
    bad(b"\xFF\xD8\xFF\x12\x34\x56garbage after soi");
    bad(b"\xFF\xD8\xFFgarbage after soi, no marker at all");
    bad(b"\xFF\xD8\xFF\xC0\x00\x11\x08\x00\x00\x00\x10\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00");
    bad(b"\xFF\xD8\xFF\xC0\x00\x0b\x01\x00\x10\x00\x10\x01\x01\x11\x00");
    let mut overflow = src[..2].to_vec();
    overflow.extend_from_slice(b"\xFF\xE1\xFF\xF0Exif\0\0");
    bad(&overflow);
    for cut in (3..src.len()).step_by(7) {
        assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
    }
}

#[test]
fn jpeg_pixel_limit_is_checked_before_decoding() {
    let src = jpeg_with_exif(400, 300, 6, true);
    let tight = PixelLimits {
        max_pixels: 119_999,
        thumbnail_size: 320,
    };
    match process(&src, &tight) {
        Err(ImagingError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height, max), (400, 300, 119_999));
        }
        other => panic!("{other:?}"),
    }
    // A frame header claiming 65535x65535 with no data behind it.
    let mut huge = b"\xFF\xD8".to_vec();
    write_jpeg_segment(
        &mut huge,
        0xC0,
        b"\x08\xff\xff\xff\xff\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00",
    )
    .unwrap();
    write_jpeg_segment(&mut huge, SOS, b"\x01\x01\x00\x00\x3f\x00").unwrap();
    assert!(matches!(
        process(&huge, &limits()),
        Err(ImagingError::TooManyPixels {
            width: 65535,
            height: 65535,
            ..
        })
    ));
}

#[test]
fn png_text_chunks_are_stripped() {
    let src = small_png(40, 30);
    assert!(png_chunk_types(&src).contains(&"tEXt".to_string()));
    let clean = process(&src, &limits()).unwrap();
    let types = png_chunk_types(&clean.bytes);
    assert_eq!(types.first().map(String::as_str), Some("IHDR"));
    assert_eq!(types.last().map(String::as_str), Some("IEND"));
    for dropped in ["tEXt", "tIME", "eXIf", "zTXt", "iTXt"] {
        assert!(!types.iter().any(|t| t == dropped), "{dropped} kept");
    }
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    assert_eq!(decode(&src).to_rgba8(), decode(&clean.bytes).to_rgba8());
    assert_eq!((clean.width, clean.height), (40, 30));
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (40, 30));
    // The transparent corner is shown on white.
    let thumb = decode(&clean.thumbnail).to_rgb8();
    assert!(thumb.get_pixel(1, 1).0.iter().all(|&c| c > 230));
}

#[test]
fn png_keeps_rendering_chunks_and_drops_trailing_data() {
    let src = small_png(8, 8);
    let mut with = png_insert_after_ihdr(&src, &png_chunk(b"gAMA", &45455u32.to_be_bytes()));
    with = png_insert_after_ihdr(&with, &png_chunk(b"zTXt", b"k\0\0x"));
    with = png_insert_after_ihdr(&with, &png_chunk(b"prVt", SECRET.as_bytes()));
    with.extend_from_slice(SECRET.as_bytes());
    let clean = process(&with, &limits()).unwrap();
    let types = png_chunk_types(&clean.bytes);
    assert!(types.contains(&"gAMA".to_string()));
    assert!(!types.contains(&"zTXt".to_string()));
    assert!(!types.contains(&"prVt".to_string()));
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
}

#[test]
fn png_header_claiming_huge_size_is_rejected_fast() {
    let src = png_header_claiming(30_000, 30_000);
    assert!(src.len() < 100);
    let started = Instant::now();
    match process(&src, &limits()) {
        Err(ImagingError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height, max), (30_000, 30_000, 50_000_000));
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(50));
    let message = process(&src, &limits()).unwrap_err().to_string();
    assert_eq!(
        message,
        "image is 30000x30000 pixels, above the limit of 50000000 pixels"
    );
    // Within the limit the same file is merely undecodable.
    assert!(matches!(
        process(&png_header_claiming(100, 100), &limits()),
        Err(ImagingError::Corrupt(_))
    ));
}

#[test]
fn malformed_pngs_are_rejected() {
    let src = small_png(16, 16);
    for cut in 8..src.len() {
        assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
    }
    let mut huge_len = src.clone();
    huge_len[33..37].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    assert!(matches!(
        process(&huge_len, &limits()),
        Err(ImagingError::Corrupt(_))
    ));
    let unknown_critical = png_insert_after_ihdr(&src, &png_chunk(b"ABCD", b""));
    assert!(matches!(
        process(&unknown_critical, &limits()),
        Err(ImagingError::Corrupt(_))
    ));
    let zero = png_header_claiming(0, 10);
    assert!(matches!(
        process(&zero, &limits()),
        Err(ImagingError::Corrupt(_))
    ));
}

#[test]
fn gif_is_cleaned_and_keeps_frames() {
    let src = small_gif(50, 20);
    assert!(contains(&src, SECRET.as_bytes()));
    let clean = process(&src, &limits()).unwrap();
    assert_eq!(clean.format, ImageFormat::Gif);
    assert_eq!((clean.width, clean.height), (50, 20));
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    assert!(!contains(&clean.bytes, b"XMP DataXMP"));
    assert!(contains(&clean.bytes, b"NETSCAPE2.0"));
    let frames = |b: &[u8]| {
        use image::AnimationDecoder;
        image::codecs::gif::GifDecoder::new(Cursor::new(b.to_vec()))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap()
            .len()
    };
    assert_eq!(frames(&src), 2);
    assert_eq!(frames(&clean.bytes), 2);
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (50, 20));
    let small = PixelLimits {
        thumbnail_size: 25,
        ..limits()
    };
    let clean = process(&src, &small).unwrap();
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (25, 10));
    let thumb = decode(&clean.thumbnail);
    assert_eq!((thumb.width(), thumb.height()), (25, 10));
}

#[test]
fn malformed_gifs_are_rejected() {
    let src = small_gif(10, 10);
    for cut in 6..src.len() - 1 {
        let _ = process(&src[..cut], &limits());
    }
    assert!(process(b"GIF89a", &limits()).is_err());
    assert!(process(b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00;", &limits()).is_err());
    let mut frame_too_big = b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00".to_vec();
    frame_too_big.extend_from_slice(b"\x2C\0\0\0\0\xff\xff\xff\xff\x00\x02\x00;");
    assert!(matches!(
        process(&frame_too_big, &limits()),
        Err(ImagingError::TooManyPixels { width: 65535, .. })
    ));
}

#[test]
fn webp_is_cleaned() {
    let src = small_webp(30, 60);
    assert_eq!(webp_chunk_types(&src), ["VP8X", "VP8L", "EXIF", "XMP "]);
    let clean = process(&src, &limits()).unwrap();
    assert_eq!(clean.format, ImageFormat::Webp);
    assert_eq!((clean.width, clean.height), (30, 60));
    assert_eq!(webp_chunk_types(&clean.bytes), ["VP8X", "VP8L"]);
    assert_eq!(clean.bytes[20] & (VP8X_FLAG_EXIF | VP8X_FLAG_XMP), 0);
    assert_eq!(clean.bytes[20] & 0x10, 0x10, "alpha flag kept");
    assert_eq!(le32(&clean.bytes, 4), Some(clean.bytes.len() as u32 - 8));
    assert!(!contains(&clean.bytes, SECRET.as_bytes()));
    assert_eq!(decode(&src).to_rgba8(), decode(&clean.bytes).to_rgba8());
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (30, 60));
    let small = PixelLimits {
        thumbnail_size: 20,
        ..limits()
    };
    let clean = process(&src, &small).unwrap();
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (10, 20));
}

#[test]
fn malformed_webps_are_rejected() {
    let src = small_webp(10, 10);
    for cut in 12..src.len() {
        assert!(process(&src[..cut], &limits()).is_err(), "prefix {cut}");
    }
    let mut bad_size = src.clone();
    bad_size[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        process(&bad_size, &limits()),
        Err(ImagingError::Corrupt(_))
    ));
    let mut huge_canvas = src.clone();
    huge_canvas[24..30].copy_from_slice(&[0xff; 6]);
    assert!(matches!(
        process(&huge_canvas, &limits()),
        Err(ImagingError::TooManyPixels { .. })
    ));
}

#[test]
fn thumbnail_dimensions_never_upscale() {
    assert_eq!(thumbnail_dimensions(4032, 3024, 320), (320, 240));
    assert_eq!(thumbnail_dimensions(3024, 4032, 320), (240, 320));
    assert_eq!(thumbnail_dimensions(100, 50, 320), (100, 50));
    assert_eq!(thumbnail_dimensions(10_000, 1, 320), (320, 1));
    assert_eq!(thumbnail_dimensions(7, 7, 0), (1, 1));
}

#[test]
fn large_jpeg_uses_shrink_on_load() {
    let src = jpeg_with_exif(1600, 1200, 6, true);
    let clean = process(&src, &limits()).unwrap();
    assert_eq!((clean.width, clean.height), (1200, 1600));
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (240, 320));
    let scaled = decode_jpeg_scaled(&clean.bytes, 320, 240, 1600, 1200).unwrap();
    assert_eq!((scaled.width(), scaled.height()), (400, 300));
}

#[test]
fn small_jpeg_decodes_whole_on_the_calling_thread_with_the_same_pixels() {
    // 300 px wide: jpeg-decoder would start a thread per component; no DCT
    // scale fits a 320 px thumbnail, so the image crate's decoder reads it.
    let src = jpeg_with_exif(300, 200, 1, false);
    let small = decode_jpeg_scaled(&src, 300, 200, 300, 200).unwrap();
    let pixels = jpeg_decoder::Decoder::new(&src[..]).decode().unwrap();
    let reference = DynamicImage::ImageRgb8(image::RgbImage::from_raw(300, 200, pixels).unwrap());
    assert_eq!(small.dimensions(), (300, 200));
    let (mean, max) = difference(&small, &reference);
    assert!(mean < 1.0 && max < 16, "mean {mean} max {max}");
    // What jpeg-decoder reads still decodes when the other refuses it (no EOI here).
    let cut = &src[..src.len() - 2];
    if jpeg_decoder::Decoder::new(cut).decode().is_ok() {
        decode_jpeg_scaled(cut, 300, 200, 300, 200).unwrap();
    }
}

/// Mean and max absolute difference of two same-sized images.
fn difference(a: &DynamicImage, b: &DynamicImage) -> (f64, u8) {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    (mean, diffs.into_iter().max().unwrap_or(0))
}

#[test]
fn dc_decoder_matches_dct_scaling() {
    for (w, h) in [(400, 300), (333, 217), (8, 8), (17, 9)] {
        let src = jpeg_with_exif(w, h, 1, false);
        let header = jpeg_header(&src).unwrap();
        let fast = decode_jpeg_dc(&src, &header).expect("baseline is covered");
        let reference = decode_jpeg_scaled(&src, 1, 1, w, h).unwrap();
        assert_eq!(fast.dimensions(), (w.div_ceil(8), h.div_ceil(8)));
        let (mean, max) = difference(&fast, &reference);
        assert!(mean < 2.0 && max < 40, "{w}x{h}: mean {mean} max {max}");
    }
}

/// A JPEG whose blocks hold only a DC value (`dc(component, block_x,
/// block_y)`, as pixel value - 128), optionally with restart markers;
/// small enough to know every output pixel exactly. With `progressive`
/// set to `Some(al)` it is a progressive JPEG with only its first scan,
/// the DC of all components shifted right by `al`.
fn dc_only_jpeg(
    width: u16,
    height: u16,
    sampling: &[(usize, usize)],
    restart: u16,
    progressive: Option<u8>,
    dc: impl Fn(usize, usize, usize) -> i32,
) -> Vec<u8> {
    let mut out = vec![0xFF, SOI];
    let mut dqt = vec![0u8];
    dqt.extend([8u8; 64]);
    write_jpeg_segment(&mut out, 0xDB, &dqt).unwrap();
    let mut sof = vec![8];
    sof.extend(height.to_be_bytes());
    sof.extend(width.to_be_bytes());
    sof.push(sampling.len() as u8);
    for (i, &(h, v)) in sampling.iter().enumerate() {
        sof.extend([i as u8 + 1, (h << 4 | v) as u8, 0]);
    }
    let sof_marker = if progressive.is_some() { 0xC2 } else { 0xC0 };
    write_jpeg_segment(&mut out, sof_marker, &sof).unwrap();
    // DC: categories 0..=11, all 4-bit codes. AC: end-of-block only, code "0".
    let mut dht = vec![0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dht.extend(0u8..12);
    dht.extend([0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    write_jpeg_segment(&mut out, 0xC4, &dht).unwrap();
    if restart > 0 {
        write_jpeg_segment(&mut out, 0xDD, &restart.to_be_bytes()).unwrap();
    }
    let mut sos = vec![sampling.len() as u8];
    for i in 0..sampling.len() {
        sos.extend([i as u8 + 1, 0x00]);
    }
    match progressive {
        Some(al) => sos.extend([0, 0, al]),
        None => sos.extend([0, 63, 0]),
    }
    write_jpeg_segment(&mut out, SOS, &sos).unwrap();

    let (h_max, v_max) = (
        sampling.iter().map(|s| s.0).max().unwrap(),
        sampling.iter().map(|s| s.1).max().unwrap(),
    );
    let mcus_x = usize::from(width).div_ceil(8 * h_max);
    let mcus_y = usize::from(height).div_ceil(8 * v_max);
    let mut bits: Vec<bool> = Vec::new();
    let flush = |bits: &mut Vec<bool>, out: &mut Vec<u8>| {
        while !bits.len().is_multiple_of(8) {
            bits.push(true);
        }
        for byte in bits.chunks(8) {
            let b = byte.iter().fold(0u8, |a, &bit| a << 1 | u8::from(bit));
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
        bits.clear();
    };
    let mut predictors = vec![0i32; sampling.len()];
    let mut mcu = 0usize;
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if restart > 0 && mcu > 0 && mcu.is_multiple_of(usize::from(restart)) {
                flush(&mut bits, &mut out);
                out.extend([0xFF, 0xD0 + ((mcu / usize::from(restart) - 1) % 8) as u8]);
                predictors.fill(0);
            }
            for (c, &(h, v)) in sampling.iter().enumerate() {
                for by in 0..v {
                    for bx in 0..h {
                        let value = dc(c, mx * h + bx, my * v + by) >> progressive.unwrap_or(0);
                        let diff = value - predictors[c];
                        predictors[c] = value;
                        let size = 32 - diff.unsigned_abs().leading_zeros();
                        bits.extend((0..4).rev().map(|i| size >> i & 1 == 1));
                        let coded = if diff < 0 {
                            diff + (1 << size) - 1
                        } else {
                            diff
                        };
                        bits.extend((0..size).rev().map(|i| coded >> i & 1 == 1));
                        if progressive.is_none() {
                            bits.push(false);
                        }
                    }
                }
            }
            mcu += 1;
        }
    }
    flush(&mut bits, &mut out);
    out.extend([0xFF, EOI]);
    out
}

#[test]
fn dc_decoder_is_exact_with_restart_markers() {
    let gray = |_: usize, x: usize, y: usize| ((x * 37 + y * 11) % 250) as i32 - 125;
    for restart in [0, 1, 3, 7] {
        let src = dc_only_jpeg(80, 56, &[(1, 1)], restart, None, gray);
        let header = jpeg_header(&src).unwrap();
        let fast = decode_jpeg_dc(&src, &header).expect("covered").to_luma8();
        let reference = decode_jpeg_scaled(&src, 1, 1, 80, 56).unwrap().to_luma8();
        assert_eq!(fast.dimensions(), (10, 7));
        for (x, y, p) in fast.enumerate_pixels() {
            let expected = gray(0, x as usize, y as usize) + 128;
            assert_eq!(i32::from(p.0[0]), expected, "restart {restart} at {x},{y}");
        }
        assert_eq!(fast, reference, "restart {restart}");
    }
    // Colour with 4:2:0 subsampling: chroma is repeated over 2x2 pixels.
    let colour = |c: usize, x: usize, y: usize| match c {
        0 => ((x * 13 + y * 29) % 200) as i32 - 100,
        1 => x as i32 * 9 - 20,
        _ => 30 - y as i32 * 11,
    };
    let src = dc_only_jpeg(64, 48, &[(2, 2), (1, 1), (1, 1)], 2, None, colour);
    let header = jpeg_header(&src).unwrap();
    let fast = decode_jpeg_dc(&src, &header).expect("covered").to_rgb8();
    assert_eq!(fast.dimensions(), (8, 6));
    for (x, y, p) in fast.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        let sample = |c, x, y| (colour(c, x, y) + 128) as u8;
        let expected = ycbcr_to_rgb(
            sample(0, x, y),
            sample(1, x / 2, y / 2),
            sample(2, x / 2, y / 2),
        );
        assert_eq!(p.0, expected, "at {x},{y}");
    }
    // The general decoder interpolates chroma instead; close on smooth chroma.
    let reference = decode_jpeg_scaled(&src, 1, 1, 64, 48).unwrap();
    let (mean, _) = difference(&DynamicImage::ImageRgb8(fast), &reference);
    assert!(mean < 6.0, "mean {mean}");

    // A wrong restart number is left to the general decoder.
    let mut wrong = dc_only_jpeg(80, 56, &[(1, 1)], 1, None, gray);
    let at = wrong.windows(2).position(|w| w == [0xFF, 0xD0]).unwrap();
    wrong[at + 1] = 0xD5;
    let header = jpeg_header(&wrong).unwrap();
    assert!(decode_jpeg_dc(&wrong, &header).is_none());
    let _ = process(
        &wrong,
        &PixelLimits {
            max_pixels: 1 << 20,
            thumbnail_size: 4,
        },
    );
}

#[test]
fn dc_decoder_reads_first_progressive_scan() {
    let colour = |c: usize, x: usize, y: usize| match c {
        0 => ((x * 13 + y * 29) % 200) as i32 - 100,
        1 => x as i32 * 9 - 20,
        _ => 30 - y as i32 * 11,
    };
    for al in [0, 1, 2] {
        let src = dc_only_jpeg(64, 48, &[(2, 1), (1, 1), (1, 1)], 3, Some(al), colour);
        let header = jpeg_header(&src).unwrap();
        let fast = decode_jpeg_dc(&src, &header).expect("covered").to_rgb8();
        for (x, y, p) in fast.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            let sample = |c, x, y| ((colour(c, x, y) >> al << al) + 128) as u8;
            let expected = ycbcr_to_rgb(sample(0, x, y), sample(1, x / 2, y), sample(2, x / 2, y));
            assert_eq!(p.0, expected, "al {al} at {x},{y}");
        }
        let reference = decode_jpeg_scaled(&src, 1, 1, 64, 48).unwrap();
        let (mean, _) = difference(&DynamicImage::ImageRgb8(fast), &reference);
        assert!(mean < 6.0, "al {al}: mean {mean}");
    }
    // Gray, and through process with a thumbnail small enough for 1/8.
    let gray = |_: usize, x: usize, y: usize| (x * 3 + y * 5) as i32 - 90;
    let src = dc_only_jpeg(160, 96, &[(1, 1)], 0, Some(1), gray);
    let clean = process(
        &src,
        &PixelLimits {
            thumbnail_size: 20,
            ..limits()
        },
    )
    .unwrap();
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (20, 12));
    assert_eq!(clean.bytes, src);
}

#[test]
fn grayscale_and_cmyk_jpegs_are_thumbnailed() {
    let gray = |_: usize, x: usize, y: usize| (x * 9 + y * 4) as i32 - 100;
    let src = dc_only_jpeg(80, 56, &[(1, 1)], 0, None, gray);
    let clean = process(&src, &limits()).unwrap();
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (80, 56));
    let thumb = decode(&clean.thumbnail).to_rgb8();
    let [r, g, b] = thumb.get_pixel(40, 28).0;
    assert!(r.abs_diff(g) <= 2 && g.abs_diff(b) <= 2, "{r} {g} {b}");
    assert!(
        r.abs_diff((gray(0, 40 / 8, 28 / 8) + 128) as u8) <= 6,
        "{r}"
    );

    // Four components: neither fast path covers CMYK, the image crate does.
    let cmyk = |c: usize, x: usize, y: usize| (x * 5 + y * 3 + c * 20) as i32 - 80;
    let src = dc_only_jpeg(48, 32, &[(1, 1); 4], 0, None, cmyk);
    let header = jpeg_header(&src).unwrap();
    assert!(decode_jpeg_dc(&src, &header).is_none());
    let clean = process(&src, &limits()).unwrap();
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (48, 32));
    let small = process(
        &src,
        &PixelLimits {
            thumbnail_size: 6,
            ..limits()
        },
    )
    .unwrap();
    assert_eq!((small.thumbnail_width, small.thumbnail_height), (6, 4));
}

#[test]
fn dc_path_thumbnail_is_upright() {
    let src = jpeg_with_exif(400, 300, 6, true);
    let small = PixelLimits {
        thumbnail_size: 40,
        ..limits()
    };
    let header = jpeg_header(&src).unwrap();
    assert!(decode_jpeg_dc(&src, &header).is_some());
    let clean = process(&src, &small).unwrap();
    assert_eq!((clean.width, clean.height), (300, 400));
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (30, 40));
    let thumb = decode(&clean.thumbnail).to_rgb8();
    let (right, left) = (thumb.get_pixel(27, 20), thumb.get_pixel(2, 20));
    assert!(right.0[0] > right.0[2] + 60, "right {right:?}");
    assert!(left.0[2] > left.0[0] + 60, "left {left:?}");
}

#[test]
fn huffman_tables_are_validated() {
    // Three 1-bit codes cannot exist.
    let mut counts = [0u8; 16];
    counts[0] = 3;
    assert!(Huffman::new(&counts, &[0, 1, 2]).is_none());
    counts[0] = 2;
    assert!(Huffman::new(&counts, &[0]).is_none());
    assert!(Huffman::new(&counts, &[0, 1]).is_some());
}

#[test]
fn resize_area_keeps_flat_colour_and_averages() {
    let flat = vec![200u8; 7 * 5 * 3];
    assert!(resize_area(&flat, 7, 5, 3, 3, 2).iter().all(|&v| v == 200));
    let stripes: Vec<u8> = (0..8).map(|x| if x % 2 == 0 { 0 } else { 255 }).collect();
    let half = resize_area(&stripes, 8, 1, 1, 4, 1);
    assert!(half.iter().all(|&v| (127..=128).contains(&v)), "{half:?}");
    assert_eq!(resize_area(&[], 0, 0, 3, 2, 2), vec![0; 12]);
}

#[test]
fn a_large_shrink_matches_the_plain_area_resample() {
    // Sizes that do not divide by the pre-shrink factor, so its last blocks are partial.
    let (sw, sh, dw, dh) = (1003, 757, 40, 30);
    let src: Vec<u8> = (0..sh)
        .flat_map(|y| {
            (0..sw).flat_map(move |x| {
                [
                    (x * 255 / sw) as u8,
                    (y * 255 / sh) as u8,
                    (x * y * 255 / (sw * sh)) as u8,
                ]
            })
        })
        .collect();
    let plain = resize_area(&src, sw, sh, 3, dw, dh);
    let fast = shrink(&src, sw, sh, 3, dw, dh);
    assert_eq!(plain.len(), fast.len());
    let diffs: Vec<u8> = plain
        .iter()
        .zip(&fast)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let worst = diffs.iter().max().copied().unwrap_or(0);
    // The partial last blocks are weighted by what they cover, so the geometry is the
    // plain resample's and the two agree to rounding.
    assert!(mean < 0.5 && worst <= 2, "mean {mean}, worst {worst}");
    // Flat colour stays exact through both steps.
    let flat = vec![77u8; sw * sh];
    assert!(shrink(&flat, sw, sh, 1, dw, dh).iter().all(|&v| v == 77));
}

#[test]
fn mutated_inputs_never_panic() {
    let inputs = [
        jpeg_with_exif(48, 32, 6, true),
        small_png(12, 9),
        small_gif(12, 9),
        small_webp(12, 9),
    ];
    let mut seed = 1u32;
    for src in &inputs {
        for _ in 0..150 {
            let mut m = src.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let at = (seed >> 8) as usize % m.len();
                m[at] = (seed >> 3) as u8;
            }
            let _ = process(&m, &limits());
            // Tiny thumbnails take the DC-only JPEG path.
            let _ = process(
                &m,
                &PixelLimits {
                    thumbnail_size: 4,
                    ..limits()
                },
            );
        }
    }
}

#[test]
fn a_turned_lossy_webp_is_stored_as_an_upright_jpeg_of_about_its_size() {
    // cwebp -q 80 of a real photo, EXIF orientation 6.
    const WEBP: &[u8] = include_bytes!("../../../tests/fixtures/images/exif_orientation_6.webp");
    let (w, h) = webp::webp_dimensions(WEBP).expect("dimensions");
    assert!(w > h, "stored sideways");
    let clean = process(WEBP, &limits()).expect("accepted");
    assert_eq!(
        (clean.source, clean.format),
        (ImageFormat::Webp, ImageFormat::Jpeg)
    );
    assert_eq!((clean.width, clean.height, clean.orientation), (h, w, 1));
    let header = jpeg_header(&clean.bytes).expect("a JPEG");
    assert_eq!((header.width, header.height, header.orientation), (h, w, 1));
    // A JPEG needs more bytes than a WebP for the same picture (here 2.2x), a lossless
    // re-encoding of lossy pixels far more (5.4x).
    assert!(
        clean.bytes.len() <= WEBP.len() * 3,
        "{} bytes stored for {}",
        clean.bytes.len(),
        WEBP.len()
    );
    assert!(jpeg_segments(&clean.bytes).iter().all(|(m, _)| *m != APP1));
    // The pixels are the WebP's, turned.
    let mut upright = decode(WEBP);
    upright.apply_orientation(image::metadata::Orientation::Rotate90);
    let (a, b) = (upright.to_rgb8(), decode(&clean.bytes).to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let diff: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    let mean = diff as f64 / a.as_raw().len() as f64;
    assert!(mean < 2.0, "mean difference {mean:.3}/255");
    assert_eq!(
        (clean.thumbnail_width, clean.thumbnail_height),
        thumbnail_dimensions(h, w, 320)
    );
    // The rendition is a JPEG like any other: stored as it is the next time.
    assert_eq!(
        process(&clean.bytes, &limits()).expect("ok").bytes,
        clean.bytes
    );
}

#[test]
fn a_turned_lossless_webp_stays_a_lossless_webp() {
    let src = small_webp_oriented(30, 60, 6);
    let clean = process(&src, &limits()).expect("accepted");
    assert_eq!(
        (clean.source, clean.format),
        (ImageFormat::Webp, ImageFormat::Webp)
    );
    assert_eq!((clean.width, clean.height), (60, 30));
    let mut upright = decode(&src);
    upright.apply_orientation(image::metadata::Orientation::Rotate90);
    assert_eq!(decode(&clean.bytes).to_rgba8(), upright.to_rgba8());
    assert!(!webp_chunk_types(&clean.bytes).contains(&"EXIF".to_owned()));
}
