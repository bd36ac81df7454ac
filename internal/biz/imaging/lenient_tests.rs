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
