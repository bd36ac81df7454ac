//! `--echo-server`: the floor's server. It answers session creation, keeps each session's
//! image list, and on an upload pushes the new snapshot to that session's watchers before
//! answering the upload; nothing else (no decoding, storage, database or bus).

use super::*;

use bytes::Bytes;
use tokio::sync::watch;

#[derive(Default)]
struct State {
    next_id: u64,
    sessions: HashMap<String, Session>,
}

struct Session {
    images: Vec<String>,
    frames: watch::Sender<Bytes>,
}

fn snapshot_frame(version: usize, images: &[String]) -> Bytes {
    let list: Vec<Value> = images.iter().map(|id| json!({ "id": id })).collect();
    Bytes::from(format!(
        "id: {version}\nevent: {SNAPSHOT_EVENT}\nretry: 2000\ndata: {}\n\n",
        Value::Array(list)
    ))
}

pub async fn run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    emit(&json!({ "port": port }));
    let state = Rc::new(RefCell::new(State::default()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(serve(stream, state.clone()));
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

async fn serve(mut stream: TcpStream, state: Rc<RefCell<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split_whitespace();
        let method = request_line.next().unwrap_or("").to_owned();
        let target = request_line.next().unwrap_or("").to_owned();
        let length: usize = lines
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        buf.drain(..head_end + 4);
        while buf.len() < length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..length);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match (method.as_str(), path) {
            ("GET", "/v1/api/sse/events") => {
                let identifier = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("identifier="))
                    .unwrap_or("");
                return sse(stream, &state, identifier).await;
            }
            ("POST", "/v1/api/upload-sessions") => {
                let id = {
                    let mut s = state.borrow_mut();
                    s.next_id += 1;
                    let id = format!("echo{}", s.next_id);
                    let (frames, _) = watch::channel(snapshot_frame(1, &[]));
                    s.sessions.insert(
                        id.clone(),
                        Session {
                            images: Vec::new(),
                            frames,
                        },
                    );
                    id
                };
                let body = json!({
                    "identifier": id,
                    "upload_url": format!("http://127.0.0.1/m/{id}#t=token"),
                });
                respond(&mut stream, "201 Created", &body.to_string()).await?;
            }
            ("POST", p) if p.ends_with("/images") => {
                let identifier = p
                    .trim_start_matches("/v1/api/upload-sessions/")
                    .trim_end_matches("/images");
                let image = {
                    let mut s = state.borrow_mut();
                    s.next_id += 1;
                    let image = format!("img{}", s.next_id);
                    s.sessions.get_mut(identifier).map(|session| {
                        session.images.push(image.clone());
                        let frame = snapshot_frame(session.images.len() + 1, &session.images);
                        session.frames.send_replace(frame);
                        image
                    })
                };
                match image {
                    Some(id) => {
                        let body = json!({ "images": [{ "id": id }] }).to_string();
                        respond(&mut stream, "201 Created", &body).await?;
                    }
                    None => respond(&mut stream, "404 Not Found", "{}").await?,
                }
            }
            ("GET", "/healthz" | "/readyz") => {
                respond(&mut stream, "200 OK", "{}").await?;
            }
            ("GET", "/metrics") => {
                respond(
                    &mut stream,
                    "200 OK",
                    "qrupload_db_snapshot_reads_total 0\n",
                )
                .await?;
            }
            _ => respond(&mut stream, "404 Not Found", "{}").await?,
        }
    }
}

async fn sse(
    mut stream: TcpStream,
    state: &RefCell<State>,
    identifier: &str,
) -> std::io::Result<()> {
    let receiver = state
        .borrow()
        .sessions
        .get(identifier)
        .map(|s| s.frames.subscribe());
    let Some(mut receiver) = receiver else {
        return respond(&mut stream, "404 Not Found", "{}").await;
    };
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    loop {
        let frame = receiver.borrow_and_update().clone();
        let mut out = format!("{:x}\r\n", frame.len()).into_bytes();
        out.extend_from_slice(&frame);
        out.extend_from_slice(b"\r\n");
        stream.write_all(&out).await?;
        if receiver.changed().await.is_err() {
            return Ok(());
        }
    }
}
