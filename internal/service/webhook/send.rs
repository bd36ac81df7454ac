//! One webhook attempt over HTTPS: the body, its signature and the request.
//!
//! The body is rendered from the event as the outbox keeps it (the session and image as they
//! were right after the change), with the REST API's JSON mapping, so every attempt sends the
//! same bytes; only the signature's timestamp changes. The client follows no redirect, uses no
//! proxy from the environment and, unless `webhooks.allow_insecure`, connects only to public
//! addresses of the name it resolved, so a DNS answer cannot point it into the private network.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use sha2::Sha256;

use crate::{
    biz::{WebhookEvent, is_public_ip},
    conf::Secret,
    service::dto::{ImageJson, SessionJson, rfc3339},
};

/// SPEC.md's webhook body.
#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    created_at: String,
    session: SessionJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<ImageJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_ids: Option<&'a [String]>,
}

/// The JSON body. The session's `upload_url` is left out: it carries the phone's upload
/// token, which has no business in a message kept and retried for a day.
pub fn render_body(event: &WebhookEvent, sse_event: &str) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Body {
        id: &event.id,
        kind: event.kind.as_str(),
        created_at: rfc3339(event.created_at),
        session: SessionJson::new(&event.session, sse_event, None),
        image: event.image.as_ref().map(ImageJson::from),
        image_ids: event.image_ids.as_deref(),
    })
}

/// `t=UNIX,v1=HEX(HMAC-SHA256(secret, "t.body"))`, as Stripe signs.
pub fn signature(secret: &Secret, unix: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    format!("t={unix},v1={hex}")
}

/// Why an attempt failed, for the log and the retry decision. Never holds the secret.
#[derive(Debug)]
pub enum AttemptError {
    Status(u16),
    Timeout,
    Network(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Status(code) => write!(f, "answered {code}"),
            AttemptError::Timeout => f.write_str("timed out"),
            AttemptError::Network(cause) => write!(f, "network error: {cause}"),
        }
    }
}

pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(timeout: Duration, allow_insecure: bool) -> reqwest::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("qrupload-webhooks/", env!("CARGO_PKG_VERSION")))
            .https_only(!allow_insecure);
        if !allow_insecure {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Sender {
            client: builder.build()?,
        })
    }

    /// Posts `body`, signed now. Ok only for a 2xx answer.
    pub async fn send(
        &self,
        url: &str,
        secret: &Secret,
        event: &WebhookEvent,
        body: Vec<u8>,
    ) -> Result<(), AttemptError> {
        let unix = chrono::Utc::now().timestamp();
        let signed = signature(secret, unix, &body);
        let answer = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Qrupload-Event-Id", event.id.as_str())
            .header("Qrupload-Event-Type", event.kind.as_str())
            .header("Qrupload-Signature", signed)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    AttemptError::Timeout
                } else {
                    // The URL's path or query may hold the receiver's own token.
                    AttemptError::Network(error_chain(&e.without_url()))
                }
            })?;
        let status = answer.status();
        // The receiver's body is not read: nothing in it changes the outcome.
        drop(answer);
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status.as_u16()))
        }
    }
}

/// reqwest's top-level message says only "error sending request"; the cause is below.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves with the system resolver and keeps only public addresses.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| is_public_ip(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (allowed only with webhooks.allow_insecure)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let sig = signature(&Secret::new("whsec_test"), 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
