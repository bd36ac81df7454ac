//! One connection, from accept to close: read the first head, then the lean path or hyper
//! (whose later heads the gate checks the same way, [`super::gate`]).
//!
//! The task's future stays small on purpose, since an SSE watcher keeps it for hours: all
//! that comes before the stream (reading the head, the router's answer) and the whole hyper
//! path run in one boxed future that is freed when it returns; only the streaming loop lives
//! in the task itself.

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::body::Body;
use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

use super::{
    Shared,
    head::{self, FirstHead},
    hyperconn, lean,
};

/// The connection task.
pub fn serve(
    tcp: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let setup = Box::pin(setup(tcp, remote, shared, stop));
    async move {
        if let Some(stream) = setup.await {
            stream.run().await;
        }
    }
}

/// A lean SSE stream whose head is written: all the task keeps for the life of a watcher.
struct Stream {
    tcp: TcpStream,
    body: Body,
    chunked: bool,
    shared: Arc<Shared>,
}

impl Stream {
    async fn run(mut self) {
        // Streams end when the hub closes them at shutdown: no stop signal here.
        lean::stream(&mut self.tcp, &mut self.body, self.chunked, &self.shared).await;
    }
}

/// Everything but a lean stream: returns one if the connection turned out to carry it. Each
/// phase with a large future is boxed, so that what every connection allocates up front stays
/// small and each allocation lives only as long as its phase.
async fn setup(
    mut tcp: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Option<Stream> {
    // Frames and heads are written whole; Nagle would only delay a head's following frame.
    let _ = tcp.set_nodelay(true);
    let first = Box::pin(async {
        let mut buf = head::head_buffer();
        let read = tokio::time::timeout(
            shared.limits.header_read_timeout,
            head::read_first(&mut tcp, &mut buf),
        );
        let first = tokio::select! {
            first = read => first.ok(),
            _ = stop.wait_for(|stop| *stop) => Some(FirstHead::Closed),
        };
        // A head begun but not finished in time gets 408; a connection that sent nothing
        // (a browser's preconnect) is closed without a word.
        first.unwrap_or(if buf.is_empty() {
            FirstHead::Closed
        } else {
            FirstHead::Refuse(head::Refusal::TOO_SLOW)
        })
    })
    .await;
    let request = match first {
        FirstHead::Closed => return None,
        FirstHead::Refuse(refusal) => {
            refuse(tcp, refusal).await;
            return None;
        }
        FirstHead::Other(prefix) => {
            Box::pin(hyperconn::serve(tcp, prefix, remote, &shared, stop)).await;
            return None;
        }
        FirstHead::Lean(request) => request,
    };
    // Boxed, as hyper's path below: the largest futures live only as long as they run, and
    // this one's allocation (which every connection makes) stays small.
    let answer = Box::pin(lean::answer(request, remote, &shared)).await;
    match answer {
        lean::Answer::Stream {
            head,
            body,
            chunked,
        } => lean::write_stream_head(&mut tcp, head, &shared)
            .await
            .then_some(Stream {
                tcp,
                body,
                chunked,
                shared,
            }),
        lean::Answer::Whole { bytes, keep_alive } => {
            if lean::write_whole(&mut tcp, bytes, keep_alive, &shared).await {
                Box::pin(hyperconn::serve(tcp, Bytes::new(), remote, &shared, stop)).await;
            }
            None
        }
        lean::Answer::Failed => None,
    }
}

/// SPEC's JSON error for a refused head; then a short lingering close, so the client reads
/// the answer instead of a reset caused by the head's unread rest.
async fn refuse(mut tcp: TcpStream, refusal: head::Refusal) {
    let answer = refusal.answer();
    let linger = async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = tcp.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), linger).await;
}
