//! Image pipeline benchmark: a 4032×3024 q90 JPEG with EXIF orientation 6 and a GPS block,
//! through detect → limits → lossless metadata removal → shrink-on-load thumbnail, on one core;
//! then the same with the DC-only thumbnail decoder switched off (`DcDecoder::Off`, the
//! `jpeg-decoder` path at 1/8 scale), in the same run.
//!
//!     scripts/bench_images.sh        # this bench and benches/heic.rs, pinned to one core
//!     cargo bench --bench pipeline   # this one alone, unpinned

use std::time::Instant;

use qrupload::biz::imaging::{DcDecoder, PixelLimits, process_with, testdata};

fn main() {
    let photo = testdata::jpeg_with_exif(4032, 3024, 6, true);
    let limits = PixelLimits {
        max_pixels: 50_000_000,
        thumbnail_size: 320,
    };
    let runs = 20;
    for dc in [DcDecoder::On, DcDecoder::Off] {
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let start = Instant::now();
            let clean = process_with(&photo, &limits, dc).expect("the photo is valid");
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            last = Some(clean);
        }
        times.sort_by(f64::total_cmp);
        let clean = last.expect("ran");
        println!(
            "{}",
            serde_json::json!({
                "dc_decoder": matches!(dc, DcDecoder::On),
                "input_bytes": photo.len(),
                "stored_bytes": clean.bytes.len(),
                "displayed": [clean.width, clean.height],
                "thumbnail": [clean.thumbnail_width, clean.thumbnail_height],
                "runs": runs,
                "ms_best": times[0],
                "ms_median": times[runs / 2],
                "ms_worst": times[runs - 1],
            })
        );
    }
}
