//! Files that mainstream decoders render although they bend the format: each is accepted,
//! and what is stored is well-formed.

use super::testdata::small_gif;
use super::*;

fn limits() -> PixelLimits {
    PixelLimits::default()
}

fn table_len(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 7) + 1)
    }
}

fn sub_blocks_end(b: &[u8], mut pos: usize) -> usize {
    while b[pos] != 0 {
        pos += 1 + usize::from(b[pos]);
    }
    pos + 1
}

/// The same GIF with its global colour table moved into every frame that used it, as
/// some encoders write them.
fn without_global_table(gif: &[u8]) -> Vec<u8> {
    let global_len = table_len(gif[10]);
    let global = &gif[13..13 + global_len];
    let mut out = gif[..13].to_vec();
    out[10] &= 0x7F;
    let mut pos = 13 + global_len;
    loop {
        match gif[pos] {
            0x3B => {
                out.push(0x3B);
                return out;
            }
            0x21 => {
                let end = sub_blocks_end(gif, pos + 2);
                out.extend_from_slice(&gif[pos..end]);
                pos = end;
            }
            0x2C => {
                let packed = gif[pos + 9];
                let local = table_len(packed);
                out.extend_from_slice(&gif[pos..pos + 9]);
                if local == 0 {
                    out.push(packed | 0x80 | (gif[10] & 7));
                    out.extend_from_slice(global);
                } else {
                    out.push(packed);
                    out.extend_from_slice(&gif[pos + 10..pos + 10 + local]);
                }
                let data = pos + 10 + local;
                let end = sub_blocks_end(gif, data + 1);
                out.extend_from_slice(&gif[data..end]);
                pos = end;
            }
            other => panic!("block {other:#04x}"),
        }
    }
}

fn first_frame(gif: &[u8]) -> image::RgbaImage {
    image::load_from_memory_with_format(gif, image::ImageFormat::Gif)
        .expect("decodes")
        .to_rgba8()
}

#[test]
fn gif_without_a_global_colour_table_is_accepted() {
    let gif = without_global_table(&small_gif(24, 16));
    assert_eq!(gif[10] & 0x80, 0, "no global colour table");
    let clean = process(&gif, &limits()).expect("accepted");
    assert_eq!(clean.format, ImageFormat::Gif);
    assert_eq!((clean.width, clean.height), (24, 16));
    assert_eq!(first_frame(&clean.bytes), first_frame(&gif));
}

#[test]
fn gif_with_unknown_extensions_is_accepted_without_them() {
    let gif = small_gif(24, 16);
    let header = 13 + table_len(gif[10]);
    let mut odd = gif[..header].to_vec();
    // An unknown extension label, and an application extension nobody knows.
    odd.extend_from_slice(b"\x21\x99\x03abc\x02de\x00");
    odd.extend_from_slice(b"\x21\xFF\x0bUNKNOWNAPP1\x02xy\x00");
    odd.extend_from_slice(&gif[header..]);
    let clean = process(&odd, &limits()).expect("accepted");
    assert!(!clean.bytes.windows(3).any(|w| w == b"abc"));
    assert!(!clean.bytes.windows(10).any(|w| w == b"UNKNOWNAPP"));
    assert_eq!(first_frame(&clean.bytes), first_frame(&gif));
}

#[test]
fn gif_with_garbage_after_a_frame_keeps_the_frames_before_it() {
    let gif = small_gif(24, 16);
    let mut odd = gif[..gif.len() - 1].to_vec();
    odd.extend_from_slice(b"<html>");
    let clean = process(&odd, &limits()).expect("accepted");
    assert!(clean.bytes.ends_with(&[0x3B]));
    assert!(!clean.bytes.windows(6).any(|w| w == b"<html>"));
    assert_eq!(first_frame(&clean.bytes), first_frame(&gif));
    // Before any frame, nothing renders.
    let header = 13 + table_len(gif[10]);
    let mut nothing = gif[..header].to_vec();
    nothing.extend_from_slice(b"<html>");
    assert!(matches!(
        process(&nothing, &limits()),
        Err(ImagingError::Corrupt(_))
    ));
}

#[test]
fn only_a_profile_of_the_thumbnails_colour_space_goes_along() {
    use super::thumbnail::profile_fits;
    let profile = |space: &[u8; 4]| {
        let mut p = vec![0u8; 128];
        p[16..20].copy_from_slice(space);
        p
    };
    assert!(profile_fits(&profile(b"RGB "), false));
    assert!(profile_fits(&profile(b"GRAY"), true));
    // A CMYK JPEG's profile does not describe its RGB thumbnail.
    assert!(!profile_fits(&profile(b"CMYK"), false));
    assert!(!profile_fits(&profile(b"GRAY"), false));
    assert!(!profile_fits(&profile(b"RGB "), true));
    assert!(!profile_fits(b"short", false));
}

#[test]
fn restart_markers_out_of_sequence_are_renumbered_and_the_copy_is_stable() {
    const RESTARTS: &[u8] =
        include_bytes!("../../../tests/fixtures/images/jolla_restart_interval.jpg");
    let rst: Vec<usize> = (0..RESTARTS.len() - 1)
        .filter(|&i| RESTARTS[i] == 0xFF && (0xD0..=0xD7).contains(&RESTARTS[i + 1]))
        .collect();
    let mut damaged = RESTARTS.to_vec();
    damaged.swap(rst[3] + 1, rst[4] + 1);
    let clean = process(&damaged, &limits()).expect("accepted");
    // Renumbered, the damaged file is the undamaged one again.
    assert_eq!(clean.bytes, process(RESTARTS, &limits()).expect("ok").bytes);
    let again = process(&clean.bytes, &limits()).expect("the copy is accepted");
    assert_eq!(again.bytes, clean.bytes);
    assert_eq!(again.thumbnail, clean.thumbnail);
}

#[test]
fn jpeg_garbage_between_segments_and_short_app14_are_left_out() {
    const PHOTO: &[u8] = include_bytes!("../../../tests/fixtures/images/nikon_gps_DSCN0010.jpg");
    let mut damaged = PHOTO[..2].to_vec();
    damaged.extend_from_slice(b"\x00\x00\xFF\xEE\x00\x07Adobe\x13\x37");
    damaged.extend_from_slice(&PHOTO[2..]);
    let clean = process(&damaged, &limits()).expect("accepted");
    assert_eq!(clean.bytes, process(PHOTO, &limits()).expect("ok").bytes);
    assert!(!clean.bytes.windows(5).any(|w| w == b"Adobe"));
}

/// The first `FF xx` in the entropy-coded data after the first SOS, at or after `from`, whose
/// second byte passes `second`.
fn in_scan_data(b: &[u8], from: usize, second: impl Fn(u8) -> bool) -> Option<usize> {
    let sos = markers(b, 0xDA)[0];
    let data = sos + 2 + usize::from(u16::from_be_bytes([b[sos + 2], b[sos + 3]]));
    (data.max(from)..b.len() - 1).find(|&i| b[i] == 0xFF && second(b[i + 1]))
}

fn insert(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = v.split_off(at);
    v.extend_from_slice(bytes);
    v.extend_from_slice(&tail);
}

#[test]
fn fill_bytes_inside_scan_data_are_dropped_as_libjpeg_reads_them() {
    let restarts: &[u8] =
        include_bytes!("../../../tests/fixtures/images/jolla_restart_interval.jpg");
    let small = testdata::jpeg_with_exif(300, 200, 1, false);
    let large = testdata::jpeg_with_exif(1600, 1200, 1, false);
    for photo in [&small[..], &large[..], BASELINE_FIXTURES[0], restarts] {
        let original = process(photo, &limits()).expect("the undamaged file");
        // `FF FF FF 00` is one stuffed 0xFF to libjpeg; jpeg-decoder refuses it.
        let mut damaged = photo.to_vec();
        let stuffed = in_scan_data(photo, photo.len() / 2, |x| x == 0x00).expect("a stuffed FF");
        insert(&mut damaged, stuffed, &[0xFF, 0xFF]);
        // Fill bytes before a restart marker, or before EOI.
        if let Some(rst) = in_scan_data(photo, stuffed, |x| (0xD0..=0xD7).contains(&x)) {
            // Two bytes further on in the damaged copy.
            insert(&mut damaged, rst + 2, &[0xFF; 3]);
        }
        let eoi = damaged.len() - 2;
        insert(&mut damaged, eoi, &[0xFF; 2]);
        let clean = process(&damaged, &limits()).expect("accepted");
        assert_eq!(
            clean.bytes, original.bytes,
            "the copy is the undamaged file's"
        );
        assert_eq!(clean.thumbnail, original.thumbnail);
    }
}

const BASELINE_FIXTURES: [&[u8]; 4] = [
    include_bytes!("../../../tests/fixtures/images/nikon_gps_DSCN0010.jpg"),
    include_bytes!("../../../tests/fixtures/images/orientation_portrait_6.jpg"),
    include_bytes!("../../../tests/fixtures/images/jolla_phone.jpg"),
    include_bytes!("../../../tests/fixtures/images/jolla_restart_interval.jpg"),
];
const PROGRESSIVE: &[u8] = include_bytes!("../../../tests/fixtures/images/jolla_progressive.jpg");

/// Start of each segment with `marker`, walking the file's structure (scan data and the
/// embedded EXIF thumbnail skipped).
fn markers(b: &[u8], marker: u8) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 2;
    while i + 4 <= b.len() {
        assert_eq!(b[i], 0xFF, "a marker at {i}");
        let m = b[i + 1];
        if m == 0xD9 {
            break;
        }
        if m == marker {
            found.push(i);
        }
        i += 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if m == 0xDA {
            // Entropy-coded data runs to the next marker that is not RSTn or stuffing.
            while b[i] != 0xFF || matches!(b[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                i += 1;
            }
        }
    }
    found
}

fn is_refused(bytes: &[u8]) -> bool {
    matches!(process(bytes, &limits()), Err(ImagingError::Corrupt(_)))
}

#[test]
fn a_jpeg_missing_only_its_end_marker_is_stored_whole_with_one() {
    for photo in BASELINE_FIXTURES {
        assert!(photo.ends_with(&[0xFF, 0xD9]));
        let whole = process(photo, &limits()).expect("whole file");
        let cut = process(&photo[..photo.len() - 2], &limits()).expect("EOI missing");
        // The copy of the whole file ends at its EOI; the cut one gets the same.
        assert_eq!(cut.bytes, whole.bytes);
        assert_eq!(cut.thumbnail, whole.thumbnail);
    }
}

#[test]
fn a_jpeg_cut_inside_its_scan_or_its_headers_is_refused() {
    for photo in BASELINE_FIXTURES {
        let sos = markers(photo, 0xDA)[0];
        let sos_end = sos + 2 + usize::from(u16::from_be_bytes([photo[sos + 2], photo[sos + 3]]));
        let dqt = markers(photo, 0xDB)[0];
        let sof = markers(photo, 0xC0)[0];
        let end = photo.len() - 2;
        // One byte of scan data is enough to lose the last MCUs.
        for cut in [end - 1, end - 64, (sos_end + end) / 2, sos_end + 1, sos_end] {
            assert!(is_refused(&photo[..cut]), "cut at {cut} of {end}");
        }
        for cut in [dqt + 10, sof + 8, sos + 5] {
            assert!(is_refused(&photo[..cut]), "header cut at {cut}");
        }
    }
}

/// Mean absolute difference per sample between two decodes, on the 0..=255 scale.
fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    let decode = |bytes: &[u8]| image::load_from_memory(bytes).expect("decodes").to_rgb8();
    let (a, b) = (decode(a), decode(b));
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn a_progressive_jpeg_cut_after_its_first_scan_keeps_its_complete_scans() {
    let sos = markers(PROGRESSIVE, 0xDA);
    assert_eq!(sos.len(), 10, "jpegtran's ten scans");
    let end = PROGRESSIVE.len() - 2;
    let whole = process(PROGRESSIVE, &limits()).expect("whole file");
    // EOI missing: the last scan cannot be told whole without decoding the refinement, so
    // it is left out like a cut one; what is left is nearly the whole picture.
    for cut in [end, end - 1, (sos[9] + end) / 2] {
        let clean = process(&PROGRESSIVE[..cut], &limits()).expect("every pixel has a value");
        // Nine scans and the EOI: the partial tenth is gone.
        assert_eq!(markers(&clean.bytes, 0xDA).len(), 9, "cut at {cut}");
        assert!(clean.bytes.ends_with(&[0xFF, 0xD9]));
        assert_eq!((clean.width, clean.height), (whole.width, whole.height));
        let diff = mean_difference(&clean.bytes, PROGRESSIVE);
        assert!(diff < 2.0, "cut at {cut}: {diff:.3}/255");
        // The copy is stable: processed again, it is stored as it is.
        assert_eq!(
            process(&clean.bytes, &limits()).expect("ok").bytes,
            clean.bytes
        );
    }
    // Cut in the table segment before the second scan, or inside the second scan: the DC
    // scan alone is left, a coarse but complete picture.
    for cut in [sos[1] - 20, (sos[1] + sos[2]) / 2] {
        let clean = process(&PROGRESSIVE[..cut], &limits()).expect("the DC scan is whole");
        assert_eq!(markers(&clean.bytes, 0xDA).len(), 1, "cut at {cut}");
        assert_eq!(clean.thumbnail_width, whole.thumbnail_width);
    }
    // Inside the DC scan, part of the picture has no value at all.
    for cut in [sos[0] + 20, (sos[0] + sos[1]) / 2, sos[1] - 60] {
        assert!(is_refused(&PROGRESSIVE[..cut]), "cut at {cut}");
    }
}
