//! The apps' log lines, captured for assertions. Tracing has one global subscriber per
//! process, so every app of this test binary writes into one buffer: assert on text that
//! only the test at hand produces (its secret, its trace id).

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the service's own telemetry setup with a capturing writer (once per binary).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let log = qrupload::conf::LogConf {
            format: qrupload::conf::LogFormat::Json,
            level: "info,sea_orm_migration=warn".into(),
        };
        let guard = qrupload::telemetry::init_with_writer(&log, &Default::default(), move || {
            writer.clone()
        })
        .expect("telemetry installs");
        std::mem::forget(guard);
        buffer
    });
}

/// Everything the apps of this test binary logged so far.
pub fn logs() -> String {
    LOGS.get()
        .and_then(|l| {
            l.lock()
                .ok()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
        })
        .unwrap_or_default()
}
