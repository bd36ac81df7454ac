//! Resumable uploads on a bad link: a 6 MB photo through a relay that cuts the connection
//! every 1 MB (and paces the uplink at 2 MB/s), sent with tus (HEAD, then PATCH from the
//! server's offset) and with the multipart route restarting from zero; and the server's memory
//! per tus upload in flight (PATCH bodies stalled mid-chunk).
//!
//!     cargo bench --bench tus_resume
//!
//! Prints one JSON line; docs/BENCHMARKS.md records the numbers.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use qrupload::{Application, biz::imaging::testdata, conf::Config};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const MB: u64 = 1_000_000;
const RATE: f64 = 2.0 * MB as f64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = Application::build(config(dir.path()))
        .await
        .expect("app builds");
    let http = app.http_addr();
    let services = app.services().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let photo = padded_jpeg(6 * MB as usize);

    let (tus_ms, tus_bytes, tus_requests) = {
        let relay = Relay::start(http).await;
        let started = Instant::now();
        let requests = tus_upload(&services, relay.addr, &photo).await;
        (started.elapsed().as_millis(), relay.sent(), requests)
    };
    let (mp_done, mp_bytes, mp_attempts, mp_ms) = {
        let relay = Relay::start(http).await;
        let started = Instant::now();
        let (done, attempts) = multipart_upload(&services, relay.addr, &photo).await;
        (done, relay.sent(), attempts, started.elapsed().as_millis())
    };
    let per_upload = memory_per_upload(&services, http).await;
    println!(
        "{}",
        serde_json::json!({
            "file_bytes": photo.len(),
            "cut_every_bytes": MB,
            "uplink_bytes_per_s": RATE,
            "tus": { "ms": tus_ms, "bytes_sent": tus_bytes, "requests": tus_requests },
            "multipart": {
                "completed": mp_done, "attempts": mp_attempts, "bytes_sent": mp_bytes, "ms": mp_ms
            },
            "memory_per_inflight_tus_upload_bytes": per_upload,
            "tus_chunk_bytes": qrupload::biz::TUS_CHUNK,
        })
    );
}

fn config(dir: &Path) -> Config {
    let vars = vec![
        (
            "QRUPLOAD__SERVER__HTTP__ADDR".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "QRUPLOAD__SERVER__GRPC__ADDR".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "QRUPLOAD__DATA__DATABASE__URL".to_owned(),
            format!("sqlite://{}/q.db?mode=rwc", dir.display()),
        ),
        (
            "QRUPLOAD__DATA__BLOB__ROOT".to_owned(),
            dir.join("blobs").display().to_string(),
        ),
        ("QRUPLOAD__LOG__LEVEL".to_owned(), "error".to_owned()),
        (
            "QRUPLOAD__LIMITS__UPLOADS_PER_SESSION_PER_MINUTE".to_owned(),
            "0".to_owned(),
        ),
        (
            "QRUPLOAD__LIMITS__UPLOADS_PER_IP_PER_MINUTE".to_owned(),
            "0".to_owned(),
        ),
        ("QRUPLOAD__UPLOAD__MAX_IMAGES".to_owned(), "30".to_owned()),
    ];
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    Config::load_with(&configs, None, vars).expect("config loads")
}

async fn session(services: &qrupload::service::Services) -> (String, String) {
    let (session, token) = services
        .usecase
        .create_session(1, None, None)
        .await
        .expect("a session");
    (session.identifier, token)
}

/// tus: create, then HEAD and PATCH from the server's offset until the file is in.
async fn tus_upload(services: &qrupload::service::Services, via: SocketAddr, photo: &[u8]) -> u32 {
    let (id, token) = session(services).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let base = format!("http://{via}");
    let mut requests = 0;
    let url = loop {
        requests += 1;
        let res = client
            .post(format!("{base}/v1/api/upload-sessions/{id}/tus/"))
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", photo.len().to_string())
            .send()
            .await;
        if let Ok(res) = res
            && res.status() == 201
            && let Some(location) = res.headers().get("location").and_then(|v| v.to_str().ok())
        {
            break format!("{base}{location}");
        }
    };
    loop {
        requests += 1;
        let head = client
            .head(&url)
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await;
        let Some(offset) = head.ok().and_then(|r| {
            r.headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
        }) else {
            continue;
        };
        if offset == photo.len() {
            return requests;
        }
        requests += 1;
        let _ = client
            .patch(&url)
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(photo[offset..].to_vec())
            .send()
            .await;
    }
}

/// Multipart: the whole file again on every attempt, at most 12.
async fn multipart_upload(
    services: &qrupload::service::Services,
    via: SocketAddr,
    photo: &[u8],
) -> (bool, u32) {
    let (id, token) = session(services).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for attempt in 1..=12 {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(photo.to_vec()).file_name("p.jpg"),
        );
        let res = client
            .post(format!("http://{via}/v1/api/upload-sessions/{id}/images"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await;
        if res.is_ok_and(|r| r.status() == 201) {
            return (true, attempt);
        }
    }
    (false, 12)
}

/// RSS growth with `N` PATCH bodies stalled 768 KiB into their upload, divided by `N`.
async fn memory_per_upload(services: &qrupload::service::Services, http: SocketAddr) -> u64 {
    // Within one session's image count (30).
    const N: usize = 25;
    const SENT: usize = 768 * 1024;
    let (id, token) = session(services).await;
    let client = reqwest::Client::new();
    let mut urls = Vec::new();
    for _ in 0..N {
        let res = client
            .post(format!("http://{http}/v1/api/upload-sessions/{id}/tus/"))
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", (8 * MB).to_string())
            .send()
            .await
            .expect("creation");
        let location = res.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        urls.push(location);
    }
    let head = vec![0xFFu8, 0xD8, 0xFF, 0xE0];
    let body = vec![b'x'; SENT];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss();
    let mut open = Vec::new();
    for url in &urls {
        let mut tcp = TcpStream::connect(http).await.expect("connect");
        let request = format!(
            "PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
            8 * MB
        );
        tcp.write_all(request.as_bytes()).await.expect("head");
        tcp.write_all(&head).await.expect("jpeg start");
        tcp.write_all(&body).await.expect("body");
        open.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss();
    drop(open);
    after.saturating_sub(before) / N as u64
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A JPEG of `size` bytes: a photo padded with comment segments (stripped when stored).
fn padded_jpeg(size: usize) -> Vec<u8> {
    let photo = testdata::jpeg_with_exif(1600, 1200, 1, false);
    let mut out = photo[..2].to_vec();
    let mut left = size - photo.len();
    while left > 0 {
        let mut segment = left.min(65_000 + 4);
        if left - segment > 0 && left - segment < 4 {
            segment -= 4;
        }
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((segment - 2) as u16).to_be_bytes());
        out.extend(std::iter::repeat_n(b'q', segment - 4));
        left -= segment;
    }
    out.extend_from_slice(&photo[2..]);
    out
}

/// Cuts the client's connection each time the client bytes through it pass another 1 MB,
/// and paces the uplink at [`RATE`].
struct Relay {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let addr = listener.local_addr().expect("address");
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pump(client, upstream, counter.clone()));
            }
        });
        Relay { addr, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

async fn pump(mut client: TcpStream, upstream: SocketAddr, sent: Arc<AtomicU64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let started = Instant::now();
        let mut mine = 0u64;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let before = sent.load(Ordering::SeqCst);
            let next_cut = (before / MB + 1) * MB;
            let take = n.min((next_cut - before) as usize);
            mine += take as u64;
            tokio::time::sleep_until(
                (started + Duration::from_secs_f64(mine as f64 / RATE)).into(),
            )
            .await;
            if sw.write_all(&buf[..take]).await.is_err() {
                return;
            }
            if sent.fetch_add(take as u64, Ordering::SeqCst) + take as u64 >= next_cut {
                return;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
