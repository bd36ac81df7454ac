//! HEIC/HEIF: brands, container dimensions before decoding, and the JPEG rendition, on real
//! phone files from `tests/fixtures/images`.

use super::heif::{heif_brand, heif_header};
use super::jpeg::jpeg_header;
use super::*;

const IPHONE: &[u8] = include_bytes!("../../../tests/fixtures/images/iphone_11_pro_max.heic");
const SMALL_HEIF: &[u8] = include_bytes!("../../../tests/fixtures/images/samplefilehub.heif");

fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
    let size = 16 + 4 * compatible.len();
    let mut v = (size as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b"ftyp");
    v.extend_from_slice(major);
    v.extend_from_slice(&[0, 0, 0, 0]);
    for brand in compatible {
        v.extend_from_slice(&brand[..]);
    }
    v
}

/// The APPn segments before the first scan: (marker, payload).
fn app_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && jpeg[at + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if (0xE0..=0xEF).contains(&jpeg[at + 1]) || jpeg[at + 1] == 0xFE {
            out.push((jpeg[at + 1], jpeg[at + 4..at + 2 + len].to_vec()));
        }
        at += 2 + len;
    }
    out
}

#[test]
fn brands_decide_heic_heif_and_avif() {
    assert_eq!(
        heif_brand(&ftyp(b"heic", &[b"mif1", b"heic"])),
        Some(ImageFormat::Heic)
    );
    // Samsung and others: a generic major brand, HEVC among the compatible ones.
    assert_eq!(
        heif_brand(&ftyp(b"mif1", &[b"heic"])),
        Some(ImageFormat::Heic)
    );
    assert_eq!(
        heif_brand(&ftyp(b"msf1", &[b"hevc"])),
        Some(ImageFormat::Heic)
    );
    assert_eq!(heif_brand(&ftyp(b"heix", &[])), Some(ImageFormat::Heic));
    assert_eq!(
        heif_brand(&ftyp(b"mif1", &[b"miaf"])),
        Some(ImageFormat::Heif)
    );
    // AV1 is not read by the decoder: unsupported, even with the generic brands.
    assert_eq!(heif_brand(&ftyp(b"avif", &[b"mif1", b"miaf"])), None);
    assert_eq!(heif_brand(&ftyp(b"mif1", &[b"avif"])), None);
    // The minor version is not a brand.
    let mut minor = ftyp(b"isom", &[b"mp42"]);
    minor[12..16].copy_from_slice(b"heic");
    assert_eq!(heif_brand(&minor), None);
    // MP4 video, QuickTime, truncated boxes.
    assert_eq!(heif_brand(&ftyp(b"isom", &[b"mp41", b"avc1"])), None);
    assert_eq!(heif_brand(&ftyp(b"qt  ", &[])), None);
    assert_eq!(heif_brand(&ftyp(b"heic", &[b"mif1"])[..12]), None);
    assert_eq!(detect(IPHONE), Some(ImageFormat::Heic));
    assert_eq!(detect(SMALL_HEIF), Some(ImageFormat::Heic));
    assert_eq!(ImageFormat::Heic.mime(), "image/heic");
    assert_eq!(ImageFormat::Heif.mime(), "image/heif");
}

#[test]
fn container_size_is_the_grid_not_a_tile() {
    let header = heif_header(IPHONE).expect("iPhone container");
    assert_eq!(&header.item_type, b"grid");
    // The grid's own `ispe`, not a tile's.
    assert_eq!(header.size, Some((2566, 3313)));
    let header = heif_header(SMALL_HEIF).expect("small container");
    assert_eq!(
        (&header.item_type, header.size),
        (b"hvc1", Some((640, 426)))
    );
}

#[test]
fn pixel_limit_is_checked_before_decoding() {
    let limits = PixelLimits {
        max_pixels: 2566 * 3313 - 1,
        thumbnail_size: 320,
    };
    // A decode of this file takes long enough (seconds in a debug build) that an early
    // refusal is the only way this returns with the exact container size.
    match process(IPHONE, &limits) {
        Err(ImagingError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height, max), (2566, 3313, limits.max_pixels));
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
}

#[test]
fn iphone_heic_becomes_an_upright_jpeg_with_its_profile_and_nothing_else() {
    let clean = process(IPHONE, &PixelLimits::default()).expect("iPhone HEIC accepted");
    assert_eq!(clean.source, ImageFormat::Heic);
    assert_eq!(clean.format, ImageFormat::Jpeg);
    assert_eq!((clean.width, clean.height), (2566, 3313));
    assert_eq!(clean.orientation, 1);
    assert_eq!(detect(&clean.bytes), Some(ImageFormat::Jpeg));
    let header = jpeg_header(&clean.bytes).expect("the rendition is a JPEG");
    assert_eq!(
        (header.width, header.height, header.orientation),
        (2566, 3313, 1)
    );

    // JFIF and the ICC profile (Display P3) only: no EXIF (GPS), no XMP.
    let apps = app_segments(&clean.bytes);
    assert!(apps.iter().all(|(m, p)| match m {
        0xE0 => p.starts_with(b"JFIF\0"),
        0xE2 => p.starts_with(b"ICC_PROFILE\0"),
        _ => false,
    }));
    let icc = jpeg_icc(&clean.bytes, &header).expect("the ICC profile is kept");
    assert!(icc.windows(4).any(|w| w == b"desc"), "an ICC profile");
    let original_icc = heifer::read_metadata(IPHONE)
        .expect("metadata")
        .icc_profile
        .expect("the iPhone file has a profile");
    assert_eq!(icc, original_icc);

    // The thumbnail: upright, the same aspect, the same profile.
    assert_eq!((clean.thumbnail_width, clean.thumbnail_height), (248, 320));
    let thumb = jpeg_header(&clean.thumbnail).expect("thumbnail JPEG");
    assert_eq!((thumb.width, thumb.height), (248, 320));
    assert_eq!(jpeg_icc(&clean.thumbnail, &thumb), Some(original_icc));

    // The stored copy goes through the pipeline unchanged.
    let again = process(&clean.bytes, &PixelLimits::default()).expect("rendition accepted");
    assert_eq!(again.bytes, clean.bytes);
    assert_eq!((again.width, again.height), (2566, 3313));
}

#[test]
fn heif_without_an_image_is_corrupt_and_avif_unsupported() {
    let mut no_meta = ftyp(b"heic", &[b"mif1"]);
    no_meta.extend_from_slice(b"\0\0\0\x08free");
    assert!(matches!(
        process(&no_meta, &PixelLimits::default()),
        Err(ImagingError::Corrupt(_))
    ));
    let mut avif = ftyp(b"avif", &[b"mif1"]);
    avif.extend_from_slice(&IPHONE[24..]);
    assert!(matches!(
        process(&avif, &PixelLimits::default()),
        Err(ImagingError::Unsupported)
    ));
    // Every prefix of a real file is refused cleanly, never a panic.
    for cut in (0..SMALL_HEIF.len()).step_by(997) {
        let _ = process(&SMALL_HEIF[..cut], &PixelLimits::default());
    }
}

#[test]
fn the_fuzzing_seed_is_accepted_and_its_rendition_is_stable() {
    const SEED: &[u8] = include_bytes!("../../../fuzz/corpus/image_pipeline/seed-heic-exif-gps");
    let limits = PixelLimits {
        max_pixels: 4_000_000,
        thumbnail_size: 8,
    };
    let clean = process(SEED, &limits).expect("seed accepted");
    assert_eq!(
        (clean.source, clean.format),
        (ImageFormat::Heic, ImageFormat::Jpeg)
    );
    assert_eq!((clean.width, clean.height), (64, 48));
    assert!(clean.thumbnail_width.max(clean.thumbnail_height) <= 8);
    let again = process(&clean.bytes, &limits).expect("rendition accepted");
    assert_eq!(again.bytes, clean.bytes);
    assert_eq!((again.width, again.height, again.orientation), (64, 48, 1));
    // JFIF without a thumbnail, no EXIF: what the fuzz target's JPEG walk allows.
    let apps = app_segments(&clean.bytes);
    assert!(
        apps.iter()
            .all(|(m, p)| *m == 0xE0 && p.len() <= 14 || *m == 0xE2)
    );
}

/// A `grid` of `rows`×`columns` cells over a `canvas`×`canvas` picture, every cell the same
/// coded item.
fn grid_of_one_tile(tile: u32, rows: u16, columns: u16, canvas: u32) -> Vec<u8> {
    grid_of_one_padded_tile(tile, 0, rows, columns, canvas)
}

/// Like [`grid_of_one_tile`], the tile's data followed by a filler NAL unit of `filler`
/// bytes, which the decoder reads past.
fn grid_of_one_padded_tile(
    tile: u32,
    filler: usize,
    rows: u16,
    columns: u16,
    canvas: u32,
) -> Vec<u8> {
    let file = testdata::heic_grid_of_one_tile(tile, filler, rows, columns, canvas);
    assert!(!file.is_empty(), "the tile encodes");
    file
}

#[test]
fn a_grid_that_repeats_one_tile_past_the_decode_budget_is_refused_before_decoding() {
    // Three times the limit is 57 pictures of 512×512.
    let limits = PixelLimits {
        max_pixels: 19 * 512 * 512,
        thumbnail_size: 64,
    };
    // One 512×512 tile listed 58 times over a 512×512 canvas: the canvas is well within the
    // limit, but the decoder would decode 58 pictures.
    let file = grid_of_one_tile(512, 2, 29, 512);
    assert!(
        file.len() < 20_000,
        "the whole file is {} bytes",
        file.len()
    );
    match process(&file, &limits) {
        Err(ImagingError::Corrupt(why)) => assert!(why.contains("pixels of pictures"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // 57 listings are exactly the budget: decoded.
    let at_budget = grid_of_one_tile(512, 3, 19, 512);
    let clean = process(&at_budget, &limits).expect("a grid within the budget is decoded");
    assert_eq!((clean.width, clean.height), (512, 512));
}

#[test]
fn a_grid_whose_tiles_cover_the_canvas_is_decoded() {
    // Four listings of one tile make the 1024×1024 canvas, as phones tile their photos.
    let file = grid_of_one_tile(512, 2, 2, 1024);
    let clean = process(&file, &PixelLimits::default()).expect("tiled HEIF accepted");
    assert_eq!(
        (clean.source, clean.width, clean.height),
        (ImageFormat::Heic, 1024, 1024)
    );
}

#[test]
fn a_large_tile_read_past_the_byte_budget_is_refused_before_decoding() {
    const FILLER: usize = 2 << 20;
    // The budget is three times the file and a megabyte: about 9 MiB here. Four readings of
    // the 2 MiB tile fit, five do not, although the pixels are far within the limit.
    let four = grid_of_one_padded_tile(512, FILLER, 1, 4, 512);
    let clean = process(&four, &PixelLimits::default()).expect("four readings are decoded");
    assert_eq!((clean.width, clean.height), (512, 512));
    let five = grid_of_one_padded_tile(512, FILLER, 1, 5, 512);
    match process(&five, &PixelLimits::default()) {
        Err(ImagingError::Corrupt(why)) => assert!(why.contains("coded data"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
