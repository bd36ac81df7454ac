//! What counts as a crash when third-party decoders run.
//!
//! `imaging` runs the image decoders under `catch_unwind` and turns a panic in one of them
//! into a `Corrupt` refusal: a bug in a dependency fails that upload, never the request. Such a
//! panic is contained by design and only noted here (once per source location). A panic raised
//! anywhere else (qrupload's own code, the standard library called from it, the target's own
//! checks) aborts, which libFuzzer reports as a crash; so does a dependency's panic that
//! escapes the containment, because libFuzzer's harness aborts on any panic reaching it.
//!
//! Also a tally of outcomes, printed at the end of a run.

// Each target uses the part it needs.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashSet},
    panic::{self, PanicHookInfo},
    sync::{Mutex, Once},
};

/// Installs the policy above around libFuzzer's own hook (which prints and aborts).
pub fn contain_third_party_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let abort = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if in_dependency(info) {
                note_once(info);
            } else {
                abort(info);
            }
        }));
    });
}

/// Raised in a crate from a registry or a git checkout, not in this repository.
fn in_dependency(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|l| {
        let file = l.file();
        file.contains("/registry/src/") || file.contains("/git/checkouts/")
    })
}

fn note_once(info: &PanicHookInfo<'_>) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(location.clone())
    {
        eprintln!("contained panic in a dependency at {location}: {info}");
    }
}

/// Counts an outcome; the counts are printed when the run ends normally, so that a run's log
/// shows which paths it reached (accepted images, each refusal).
pub fn count(outcome: impl Into<String>) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        unsafe extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        // SAFETY: registers a plain function with no arguments, as atexit expects.
        unsafe {
            atexit(print_counts);
        }
    });
    let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry(outcome.into()).or_insert(0) += 1;
}

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

extern "C" fn print_counts() {
    let counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("outcomes: {}", line.join(" "));
}
