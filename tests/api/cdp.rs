//! A minimal Chrome DevTools Protocol client: starts headless Chromium and drives its pages over
//! one WebSocket, with one flattened session per page and one browser context per page, so two
//! pages share no cookies or storage (a desktop and a phone).

use std::{
    collections::HashMap,
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use futures::{SinkExt, StreamExt, stream::SplitSink};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    sync::oneshot,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium and the files in `needs` (path, how to get it) are there. Missing ones
/// fail the test when `QRUPLOAD_TEST_BROWSER` is set, and skip it otherwise.
pub fn prerequisites(test: &str, needs: &[(std::path::PathBuf, &str)]) -> bool {
    let chromium = (
        std::path::PathBuf::from(CHROMIUM),
        "apt-get install chromium",
    );
    let missing: Vec<String> = std::iter::once(&chromium)
        .chain(needs)
        .filter(|(path, _)| !path.exists())
        .map(|(path, fix)| format!("{} ({fix})", path.display()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("QRUPLOAD_TEST_BROWSER").is_some() {
        panic!("QRUPLOAD_TEST_BROWSER is set but these are missing: {missing:?}");
    }
    eprintln!("skipping {test}: missing {missing:?}");
    false
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = Result<Value, String>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;
/// (session id, URL) of every request a page with the network domain enabled sent.
type Requests = Arc<Mutex<Vec<(String, String)>>>;
type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A headless Chromium, killed on drop.
pub struct Browser {
    child: Child,
    sink: tokio::sync::Mutex<Sink>,
    pending: Pending,
    requests: Requests,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("browser profile dir");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");

        let stderr = child.stderr.take().expect("chromium stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(CALL_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("chromium stderr reads") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without printing its DevTools URL");
        })
        .await
        .expect("chromium prints its DevTools URL in time");
        // Keep draining stderr so chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("DevTools WebSocket connects");
        let (sink, mut stream) = ws.split();
        let pending = Pending::default();
        let replies = pending.clone();
        let requests = Requests::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                // Events carry no id; only the requests pages send are kept.
                let Some(id) = reply["id"].as_u64() else {
                    if reply["method"] == "Network.requestWillBeSent"
                        && let (Some(session), Some(url)) = (
                            reply["sessionId"].as_str(),
                            reply["params"]["request"]["url"].as_str(),
                        )
                    {
                        seen.lock()
                            .expect("requests lock")
                            .push((session.to_owned(), url.to_owned()));
                    }
                    continue;
                };
                let result = match reply.get("error") {
                    Some(error) => Err(error.to_string()),
                    None => Ok(reply["result"].clone()),
                };
                if let Some(tx) = replies.lock().expect("pending calls lock").remove(&id) {
                    let _ = tx.send(result);
                }
            }
            // The socket closed: dropping the senders fails every waiting call.
            replies.lock().expect("pending calls lock").clear();
        });

        Browser {
            child,
            sink: tokio::sync::Mutex::new(sink),
            pending,
            requests,
            next_id: AtomicU64::new(1),
            _profile: profile,
        }
    }

    /// Sends one command (to a page when `session` is given) and returns its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending calls lock")
            .insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{method}: cannot send to DevTools: {e}"));
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("{method} failed: {error}"),
            Ok(Err(_)) => panic!("{method}: the DevTools connection closed"),
            Err(_) => panic!("{method}: no answer within {CALL_TIMEOUT:?}"),
        }
    }

    /// A blank page in a browser context of its own, with the given viewport.
    pub async fn new_page(&self, width: u32, height: u32, mobile: bool) -> Page<'_> {
        let context = self
            .call(None, "Target.createBrowserContext", json!({}))
            .await;
        let target = self
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": context["browserContextId"] }),
            )
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let page = Page {
            browser: self,
            session,
        };
        page.call("Page.enable", json!({})).await;
        // Steady pictures: no entry animations or pulsing dots.
        page.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-reduced-motion", "value": "reduce" }] }),
        )
        .await;
        page.set_viewport(width, height, mobile).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One page (tab), driven through its flattened session.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        let metrics =
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
        self.call("Emulation.setDeviceMetricsOverride", metrics)
            .await;
        // Let layout and paint catch up before anyone looks.
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            .await;
    }

    /// Records every request this page sends from now on (see [`Page::requested_urls`]), and
    /// sends `Accept-Language` when given.
    pub async fn record_requests(&self, accept_language: Option<&str>) {
        self.call("Network.enable", json!({})).await;
        if let Some(lang) = accept_language {
            self.call(
                "Network.setExtraHTTPHeaders",
                json!({ "headers": { "Accept-Language": lang } }),
            )
            .await;
        }
    }

    /// The URLs of the requests this page sent since [`Page::record_requests`].
    pub fn requested_urls(&self) -> Vec<String> {
        self.browser
            .requests
            .lock()
            .expect("requests lock")
            .iter()
            .filter(|(session, _)| *session == self.session)
            .map(|(_, url)| url.clone())
            .collect()
    }

    /// Presses and releases a key on the focused element, as a keyboard does
    /// (`Enter` or a space).
    pub async fn press(&self, key: &str) {
        let (code, key_code, text) = match key {
            "Enter" => ("Enter", 13, "\r"),
            " " => ("Space", 32, " "),
            "Tab" => ("Tab", 9, ""),
            other => panic!("no key code for {other:?}"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({
                "type": kind, "key": key, "code": code,
                "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code,
            });
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = text.into();
            }
            self.call("Input.dispatchKeyEvent", event).await;
        }
    }

    /// Navigates and waits for the load event.
    pub async fn goto(&self, url: &str) {
        let nav = self.call("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = nav["errorText"].as_str() {
            panic!("navigating to {url} failed: {error}");
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(10),
            &format!("{url} loads"),
        )
        .await;
    }

    /// Evaluates JavaScript (awaiting a returned promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let reply = self.call("Runtime.evaluate", params).await;
        if let Some(details) = reply.get("exceptionDetails") {
            panic!("`{expression}` threw: {details}");
        }
        reply["result"]["value"].clone()
    }

    /// The page's address and visible text, for failure messages.
    pub async fn dump(&self) -> String {
        let text = self
            .eval("location.href + '\\n' + (document.body ? document.body.innerText : '')")
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Polls `condition` (a JavaScript expression) every 50 ms until it is `true`.
    pub async fn wait_for(&self, condition: &str, timeout: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.dump().await;
                panic!(
                    "timed out after {timeout:?} waiting until {what} (`{condition}`); the page:\n{page}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Chooses files in the `<input type=file>` matching `selector`, as a person would.
    pub async fn set_input_files(&self, selector: &str, files: &[&Path]) {
        let document = self.call("DOM.getDocument", json!({ "depth": 0 })).await;
        let found = self
            .call(
                "DOM.querySelector",
                json!({ "nodeId": document["root"]["nodeId"], "selector": selector }),
            )
            .await;
        let node = found["nodeId"].as_u64().filter(|&n| n != 0);
        let node = node.unwrap_or_else(|| panic!("no element matches {selector}"));
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        self.call(
            "DOM.setFileInputFiles",
            json!({ "files": files, "nodeId": node }),
        )
        .await;
    }

    /// Saves the viewport as a PNG.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
