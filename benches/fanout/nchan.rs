//! `--nchan`: nginx with the nchan module in place of the servers, as the yardstick.
//!
//! The bench writes an nginx config into its temp folder and starts nginx on a free port, as
//! one process (`master_process off`) so that its RSS and CPU are read like a server's. Each
//! session is a channel: watchers subscribe to `/sub/{id}` as EventSource (the same raw-TCP
//! workers and SSE parser, asking for the same event name), and an "upload" is a POST of the
//! session's new snapshot to `/pub/{id}`. The channel keeps only its newest message, and a
//! subscriber gets that one first, as a qrupload watcher gets the current snapshot.
//!
//! Needs `/usr/sbin/nginx` and `libnginx-mod-nchan` (Debian); `NGINX` and `NCHAN_MODULE`
//! point elsewhere.

use super::*;

const NGINX: &str = "/usr/sbin/nginx";
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// The config: one process, no logs on the hot path, room for every watcher's socket.
fn config(dir: &Path, port: u16, module: &str, heartbeat_secs: u64) -> String {
    let d = dir.display();
    format!(
        r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 1048576;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{
    worker_connections 1000000;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    nchan_max_reserved_memory 128M;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /healthz {{
            return 200 "ok";
        }}
        # The bench reads the servers' counters; nchan has none of ours.
        location = /metrics {{
            return 200 "";
        }}
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            nchan_eventsource_event {SNAPSHOT_EVENT};
            nchan_subscriber_first_message oldest;
            nchan_eventsource_ping_interval {heartbeat_secs};
        }}
        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
            nchan_message_buffer_length 1;
            nchan_message_timeout 1h;
        }}
    }}
}}
"#
    )
}

pub fn start(a: &coordinator::Args, dir: &Path) -> coordinator::Server {
    let nginx = std::env::var("NGINX").unwrap_or_else(|_| NGINX.into());
    let module = std::env::var("NCHAN_MODULE").unwrap_or_else(|_| NCHAN_MODULE.into());
    assert!(
        Path::new(&module).exists(),
        "no nchan module at {module}: apt-get install libnginx-mod-nchan (or set NCHAN_MODULE)"
    );
    let port = coordinator::free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port, &module, 15)).expect("write nginx.conf");
    let log = dir.join("nginx-error.log");
    let out = std::fs::File::create(dir.join("nginx-stdout.log")).expect("nginx log");
    let child = coordinator::command(a, Path::new(&nginx))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("nginx log"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {nginx}: {e}"));
    coordinator::Server::new(child, port, Some(log))
}

/// The snapshot a channel carries: the session's images as the watchers' parser reads them.
pub fn snapshot(images: &[String]) -> String {
    let list: Vec<Value> = images.iter().map(|id| json!({ "id": id })).collect();
    Value::Array(list).to_string()
}
