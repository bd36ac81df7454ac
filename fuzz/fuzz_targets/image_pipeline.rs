//! Arbitrary bytes through the image pipeline, exactly as an upload goes: `imaging::process`
//! (detect → pixel limit → metadata removal → thumbnail), as `ImageUsecase` calls it.
//!
//! Beyond "no panic", every outcome is checked:
//! - refusals agree with the magic bytes (`Unsupported` exactly when `detect` says none, or
//!   for a HEIF whose items the decoder does not read) and with the pixel limit;
//! - an accepted image's stored copy is detected as the format it is stored in (a JPEG for
//!   HEIC/HEIF, the upload's own format otherwise), is accepted again, and cleaning it again
//!   changes nothing (same bytes, size, orientation, and thumbnail unless it was a HEIC);
//! - the stored copy carries no metadata: a JPEG has no APP1 but a minimal EXIF holding only a
//!   non-default orientation, no comment and no other APPn than JFIF (without its thumbnail),
//!   ICC and Adobe, and nothing after EOI; PNG, WebP and GIF keep only their rendering chunks
//!   or blocks, and nothing after their end;
//! - the thumbnail is a JPEG no larger than the configured size and the displayed image.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use qrupload::biz::imaging::{CleanImage, ImageFormat, ImagingError, PixelLimits, detect, process};

/// Small enough that even a full-size decode takes milliseconds.
const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|data: &[u8]| {
    common::contain_third_party_panics();
    // The configured thumbnail size, or a tiny one, which sends JPEGs of 64 px and more
    // through the DC-only decoder. The input's length picks one, so a run is repeatable.
    let thumbnail_size = if data.len().is_multiple_of(2) { 320 } else { 8 };
    let limits = PixelLimits {
        max_pixels: MAX_PIXELS,
        thumbnail_size,
    };
    let result = process(data, &limits);
    common::count(match &result {
        Ok(clean) => format!(
            "accepted_{}",
            clean.format.mime().trim_start_matches("image/")
        ),
        Err(ImagingError::Unsupported) => "unsupported".into(),
        Err(ImagingError::TooManyPixels { .. }) => "too_many_pixels".into(),
        Err(ImagingError::Corrupt(_)) => "corrupt".into(),
    });
    match result {
        // A HEIF whose images are coded in AV1, JPEG or other than HEVC is unsupported too.
        Err(ImagingError::Unsupported) => assert!(matches!(
            detect(data),
            None | Some(ImageFormat::Heic | ImageFormat::Heif)
        )),
        Err(ImagingError::TooManyPixels { width, height, max }) => {
            assert!(detect(data).is_some());
            assert_eq!(max, MAX_PIXELS);
            assert!(u64::from(width) * u64::from(height) > MAX_PIXELS);
        }
        Err(ImagingError::Corrupt(_)) => assert!(detect(data).is_some()),
        Ok(clean) => check_accepted(data, &limits, &clean),
    }
});

fn check_accepted(data: &[u8], limits: &PixelLimits, clean: &CleanImage) {
    assert_eq!(detect(data), Some(clean.source));
    if matches!(clean.source, ImageFormat::Heic | ImageFormat::Heif) {
        assert_eq!(
            clean.format,
            ImageFormat::Jpeg,
            "a HEIF is stored as a JPEG"
        );
    } else {
        assert_eq!(clean.format, clean.source);
    }
    assert_eq!(
        detect(&clean.bytes),
        Some(clean.format),
        "the stored copy is detected as another type"
    );
    assert!(clean.width > 0 && clean.height > 0);
    assert!(u64::from(clean.width) * u64::from(clean.height) <= MAX_PIXELS);
    assert!((1..=8).contains(&clean.orientation));
    if clean.format != ImageFormat::Jpeg {
        assert_eq!(clean.orientation, 1);
    }

    assert_eq!(detect(&clean.thumbnail), Some(ImageFormat::Jpeg));
    let (tw, th) = (clean.thumbnail_width, clean.thumbnail_height);
    assert!(tw >= 1 && th >= 1);
    assert!(tw.max(th) <= limits.thumbnail_size, "thumbnail {tw}x{th}");
    assert!(
        tw <= clean.width && th <= clean.height,
        "thumbnail {tw}x{th} larger than the image {}x{}",
        clean.width,
        clean.height
    );

    match clean.format {
        ImageFormat::Jpeg => check_jpeg(&clean.bytes, clean.orientation),
        ImageFormat::Png => check_png(&clean.bytes),
        ImageFormat::Webp => check_webp(&clean.bytes),
        ImageFormat::Gif => check_gif(&clean.bytes),
        ImageFormat::Heic | ImageFormat::Heif => panic!("a HEIF stored as it came"),
    }

    // Cleaning is idempotent: the stored copy goes through unchanged.
    let again = match process(&clean.bytes, limits) {
        Ok(again) => again,
        Err(e) => panic!("the stored copy is refused: {e}"),
    };
    assert_eq!(again.format, clean.format);
    assert_eq!((again.width, again.height), (clean.width, clean.height));
    assert_eq!(again.orientation, clean.orientation);
    assert!(
        again.bytes == clean.bytes,
        "cleaning twice changed the bytes"
    );
    assert_eq!(
        (again.thumbnail_width, again.thumbnail_height),
        (clean.thumbnail_width, clean.thumbnail_height)
    );
    // A HEIF's thumbnail comes from the decoded pixels, the rendition's from its JPEG.
    if clean.source == clean.format {
        assert!(
            again.thumbnail == clean.thumbnail,
            "the stored copy gives another thumbnail"
        );
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

/// The only EXIF a cleaned JPEG may carry: Orientation alone, in IFD0, no next IFD.
fn orientation_only_exif(orientation: u16) -> Vec<u8> {
    let mut v = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    v.extend_from_slice(&orientation.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v
}

/// Walks the whole cleaned JPEG, scans included, and checks every segment it keeps.
fn check_jpeg(b: &[u8], orientation: u16) {
    assert!(b.starts_with(&[0xFF, 0xD8]));
    let mut app1 = Vec::new();
    let mut pos = 2;
    let mut in_scan = false;
    loop {
        if in_scan {
            // Entropy-coded data runs to the next marker that is not a stuffed zero, a
            // restart marker or a fill byte.
            loop {
                let at = pos + b[pos..].iter().position(|&x| x == 0xFF).expect("EOI");
                match b.get(at + 1) {
                    Some(0x00 | 0xD0..=0xD7) => pos = at + 2,
                    Some(0xFF) => pos = at + 1,
                    Some(_) => {
                        pos = at;
                        break;
                    }
                    None => panic!("the cleaned JPEG ends inside a scan"),
                }
            }
        }
        assert_eq!(b.get(pos), Some(&0xFF), "expected a marker at {pos}");
        while b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos + 1).expect("marker");
        pos += 2;
        match marker {
            0xD9 => {
                assert_eq!(pos, b.len(), "bytes after EOI");
                break;
            }
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = be16(b, pos).expect("segment length");
        assert!(len >= 2);
        let payload = b.get(pos + 2..pos + len).expect("segment in bounds");
        match marker {
            0xE0 => {
                assert!(payload.starts_with(b"JFIF\0"), "APP0 that is not JFIF");
                assert!(payload.len() <= 14, "JFIF with an embedded thumbnail");
            }
            0xE1 => app1.push(payload.to_vec()),
            0xE2 => assert!(
                payload.starts_with(b"ICC_PROFILE\0"),
                "APP2 that is not ICC"
            ),
            0xEE => assert!(payload.starts_with(b"Adobe"), "APP14 that is not Adobe"),
            0xE3..=0xED | 0xEF | 0xFE => panic!("metadata segment {marker:#04x} kept"),
            _ => {}
        }
        pos += len;
        // From the first scan on, whatever lies between segments is entropy-coded data (as
        // the cleaner reads it too).
        in_scan |= marker == 0xDA;
    }
    if orientation == 1 {
        assert!(app1.is_empty(), "APP1 kept in an upright JPEG");
    } else {
        assert_eq!(app1, vec![orientation_only_exif(orientation)]);
    }
}

const PNG_KEEP: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"bKGD", b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
];

fn check_png(b: &[u8]) {
    let mut pos = 8;
    loop {
        let len = u32::from_be_bytes(b[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let kind = &b[pos + 4..pos + 8];
        assert!(
            PNG_KEEP.iter().any(|k| &k[..] == kind),
            "PNG chunk {:?} kept",
            String::from_utf8_lossy(kind)
        );
        pos += 12 + len;
        if kind == b"IEND" {
            assert_eq!(pos, b.len(), "bytes after IEND");
            return;
        }
    }
}

fn check_webp(b: &[u8]) {
    let riff = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
    assert_eq!(riff + 8, b.len(), "RIFF size");
    let mut pos = 12;
    while pos < b.len() {
        let kind = &b[pos..pos + 4];
        let size = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        assert!(
            matches!(
                kind,
                b"VP8X" | b"VP8 " | b"VP8L" | b"ALPH" | b"ICCP" | b"ANIM" | b"ANMF"
            ),
            "WebP chunk {:?} kept",
            String::from_utf8_lossy(kind)
        );
        if kind == b"VP8X" {
            assert_eq!(b[pos + 8] & 0x0C, 0, "VP8X still flags EXIF or XMP");
        }
        pos += 8 + size + size % 2;
    }
    assert_eq!(pos, b.len());
}

fn gif_sub_blocks_end(b: &[u8], mut pos: usize) -> usize {
    loop {
        let n = usize::from(b[pos]);
        pos += 1 + n;
        if n == 0 {
            return pos;
        }
    }
}

fn check_gif(b: &[u8]) {
    let table = |packed: u8| {
        if packed & 0x80 == 0 {
            0
        } else {
            3 << ((packed & 7) + 1)
        }
    };
    let mut pos = 13 + table(b[10]);
    loop {
        match b[pos] {
            0x3B => {
                assert_eq!(pos + 1, b.len(), "bytes after the GIF trailer");
                return;
            }
            0x2C => pos = gif_sub_blocks_end(b, pos + 10 + table(b[pos + 9]) + 1),
            0x21 => {
                let label = b[pos + 1];
                let keep = match label {
                    0xF9 | 0x01 => true,
                    0xFF => matches!(
                        b.get(pos + 2..pos + 14),
                        Some(b"\x0bNETSCAPE2.0" | b"\x0bANIMEXTS1.0")
                    ),
                    _ => false,
                };
                assert!(keep, "GIF extension {label:#04x} kept");
                pos = gif_sub_blocks_end(b, pos + 2);
            }
            other => panic!("unknown GIF block {other:#04x} at {pos}"),
        }
    }
}
