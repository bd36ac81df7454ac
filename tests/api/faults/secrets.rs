//! Secrets stay out of the logs: a whole flow with logging at `debug`, then a search of
//! everything the process printed for the flow's tokens.

use std::collections::BTreeSet;

use qrupload::api::image::v1 as pb;
use serde_json::Value;

use super::{
    identifier, uploaded_ids,
    wire::{End, PATIENCE, Watcher, token_of, within},
};
use crate::helpers::{jpeg, jwt::hs256_jwt, process::Server};

/// Who the desktop's requests speak for. In dev auth the member is named in the query or body;
/// an auth mode with bearer tokens for members sets `bearer`, which is then sent with every
/// member request and joins the secrets looked for in the logs.
struct MemberAuth {
    member_id: u32,
    bearer: Option<String>,
}

impl MemberAuth {
    fn dev(member_id: u32) -> Self {
        MemberAuth {
            member_id,
            bearer: None,
        }
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }
}

/// Starts the binary with logs at `debug` (JSON lines) plus `overrides`, runs a whole flow
/// through every kind of request as `auth`, stops it, and checks that no secret of the flow
/// (every upload token, and `auth`'s bearer token if any) appears in what it printed, as is
/// or URL-encoded.
async fn assert_whole_flow_keeps_secrets_out_of_debug_logs(
    overrides: &[(&str, &str)],
    auth: MemberAuth,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = vec![("QRUPLOAD__LOG__LEVEL", "debug")];
    env.extend_from_slice(overrides);
    let mut server = Server::start(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let base = server.url("");
    let member = auth.member_id;
    let mut secrets: Vec<String> = auth.bearer.iter().cloned().collect();

    // The desktop: a session and its QR code.
    let res = within(
        "create",
        auth.apply(client.post(format!("{base}/v1/api/upload-sessions")))
            .json(&serde_json::json!({ "member_id": member }))
            .send(),
    )
    .await
    .expect("create");
    assert_eq!(res.status(), 201);
    let session: Value = res.json().await.expect("session JSON");
    let (id, token) = (identifier(&session), token_of(&session));
    secrets.push(token.clone());
    for path in [
        format!("/v1/api/upload-sessions/{id}/qr.svg?member_id={member}"),
        format!("/v1/api/upload-sessions/{id}?member_id={member}"),
    ] {
        let res = within(
            "member read",
            auth.apply(client.get(format!("{base}{path}"))).send(),
        )
        .await
        .expect("member read");
        assert_eq!(res.status(), 200, "{path}");
    }
    let events_url =
        format!("{base}/v1/api/sse/events?event=upload_by_qr&member_id={member}&identifier={id}");
    // EventSource sends no headers: in jwt mode a stream ticket stands in for the token.
    let sse = match &auth.bearer {
        Some(jwt) => {
            let res = within(
                "stream ticket",
                client
                    .post(format!("{base}/v1/api/upload-sessions/{id}/stream-ticket"))
                    .bearer_auth(jwt)
                    .send(),
            )
            .await
            .expect("stream ticket");
            assert_eq!(res.status(), 201);
            let body: Value = res.json().await.expect("ticket JSON");
            let ticket = body["ticket"].as_str().expect("ticket").to_owned();
            client.get(format!("{events_url}&ticket={ticket}"))
        }
        None => client.get(&events_url),
    };
    let mut watcher = Watcher::connect_with(sse, None).await;

    // The phone: upload-info, an upload with an idempotency key, a delete.
    let res = within(
        "upload-info",
        client
            .get(format!("{base}/v1/api/upload-sessions/{id}/upload-info"))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .expect("upload-info");
    assert_eq!(res.status(), 200);
    let mut form = reqwest::multipart::Form::new();
    for n in 0..2 {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(jpeg(30 + n, 20)).file_name(format!("{n}.jpg")),
        );
    }
    let res = within(
        "upload",
        client
            .post(format!("{base}/v1/api/upload-sessions/{id}/images"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "flow-1")
            .multipart(form)
            .send(),
    )
    .await
    .expect("upload");
    let ids = uploaded_ids(res).await;
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    within(
        "the watcher sees the upload",
        watcher.until_latest_holds(&want),
    )
    .await;
    for path in [
        format!("/v1/api/images/{}", ids[0]),
        format!("/v1/api/images/{}/thumbnail", ids[0]),
    ] {
        let res = within("image", client.get(format!("{base}{path}")).send())
            .await
            .expect("image");
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = within(
        "phone delete",
        client
            .delete(format!(
                "{base}/v1/api/upload-sessions/{id}/images/{}",
                ids[0]
            ))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .expect("delete");
    assert_eq!(res.status(), 204);

    // The desktop completes; the stream ends; a service reads the images over gRPC.
    let res = within(
        "complete",
        auth.apply(client.post(format!(
            "{base}/v1/api/upload-sessions/{id}/complete?member_id={member}"
        )))
        .send(),
    )
    .await
    .expect("complete");
    assert_eq!(res.status(), 200);
    assert_eq!(within("stream end", watcher.until_end()).await, End::Closed);
    let mut grpc = within(
        "gRPC connect",
        pb::image_service_client::ImageServiceClient::connect(format!("http://{}", server.grpc)),
    )
    .await
    .expect("gRPC connects");
    let images = within(
        "GetImagesByIdentifier",
        grpc.get_images_by_identifier(pb::GetImagesByIdentifierRequest {
            member_id: member,
            identifier: id.clone(),
        }),
    )
    .await
    .expect("GetImagesByIdentifier")
    .into_inner();
    assert_eq!(images.images.len(), 1);
    let created = within(
        "CreateUploadSession",
        grpc.create_upload_session(pb::CreateUploadSessionRequest {
            member_id: member,
            ttl_seconds: None,
            max_images: None,
        }),
    )
    .await
    .expect("CreateUploadSession")
    .into_inner();
    secrets.push(created.upload_token);

    server.terminate();
    assert!(server.wait_exit(PATIENCE).await.success());
    let output = server.output();
    // The logs did record the flow, at debug level: the check below looks at real output.
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "debug lines:\n{output}"
    );
    assert!(
        output.contains(&id),
        "the session's lines are there:\n{output}"
    );
    for secret in &secrets {
        for form in [secret.clone(), url_encoded(secret)] {
            if let Some(line) = output.lines().find(|l| l.contains(&form)) {
                panic!("a secret is in the logs: {line}");
            }
        }
    }
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// In dev auth the only secrets are the upload tokens.
#[tokio::test]
async fn debug_logs_of_a_whole_flow_never_show_an_upload_token() {
    assert_whole_flow_keeps_secrets_out_of_debug_logs(&[], MemberAuth::dev(7)).await;
}

/// In jwt auth the member's JWT (sent as a bearer header) is a secret too.
#[tokio::test]
async fn debug_logs_of_a_whole_jwt_flow_never_show_the_jwt_or_an_upload_token() {
    const SECRET: &str = "a debug-log test secret, long enough for HS256";
    let jwt = hs256_jwt(SECRET, "7", 600);
    assert_whole_flow_keeps_secrets_out_of_debug_logs(
        &[
            ("QRUPLOAD__AUTH__MODE", "jwt"),
            ("QRUPLOAD__AUTH__JWT__SECRET", SECRET),
        ],
        MemberAuth {
            member_id: 7,
            bearer: Some(jwt),
        },
    )
    .await;
}
