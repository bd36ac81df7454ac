//! The same output before and after a change to the image code: for every file in a folder
//! (JPEG, PNG, GIF, WebP, HEIC), the SHA-256 of the stored copy and of the thumbnail, or the
//! error, one line per file in name order, then a count. Run it on the code before and after
//! a change and compare the two listings; an optimisation that is meant to change nothing
//! must leave them identical.
//!
//!     cargo bench --bench corpus -- FOLDER > after.txt
//!     diff before.txt after.txt
//!
//! A folder of real camera files: for example the JPEGs of the public
//! `drewnoakes/metadata-extractor-images` collection (427 files from some 200 cameras and
//! phones).

use std::path::PathBuf;

use qrupload::biz::imaging::{PixelLimits, process};
use sha2::{Digest, Sha256};

fn main() {
    let Some(folder) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench --bench corpus -- FOLDER");
        std::process::exit(2);
    };
    // The limits the service ships with (`configs/config.yaml` says the same).
    let limits = PixelLimits::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => {
            eprintln!("{folder}: {e}");
            std::process::exit(2);
        }
    };
    files.sort();
    let (mut stored, mut refused) = (0, 0);
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Ok(bytes) = std::fs::read(path) else {
            println!("{name} unreadable");
            continue;
        };
        match process(&bytes, &limits) {
            Ok(clean) => {
                stored += 1;
                println!(
                    "{name} {:x} {:x} {}x{}",
                    Sha256::digest(&clean.bytes),
                    Sha256::digest(&clean.thumbnail),
                    clean.thumbnail_width,
                    clean.thumbnail_height
                );
            }
            Err(e) => {
                refused += 1;
                println!("{name} refused: {e}");
            }
        }
    }
    eprintln!("{} files: {stored} stored, {refused} refused", files.len());
}
