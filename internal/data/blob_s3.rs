//! [`BlobStore`] on any S3-compatible service (AWS S3, MinIO, Ceph, …) through `object_store`.
//! Credentials come from `data.blob.s3.*` or the usual `AWS_*` variables; each blob is one
//! object under the key biz gave it.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{
    ObjectStore, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};

use crate::{
    biz::{BizError, BlobStore, Result},
    conf::S3Conf,
};

pub struct S3BlobStore {
    store: AmazonS3,
}

/// `data.blob.s3.*` (with the `AWS_*` variables) does not describe a usable store.
#[derive(Debug, thiserror::Error)]
#[error("data.blob.s3: {0}")]
pub struct S3ConfigError(#[source] object_store::Error);

impl S3BlobStore {
    pub fn new(conf: &S3Conf) -> std::result::Result<Self, S3ConfigError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_virtual_hosted_style_request(!conf.path_style)
            .with_allow_http(conf.allow_http);
        if let Some(bucket) = &conf.bucket {
            builder = builder.with_bucket_name(bucket);
        }
        if let Some(region) = &conf.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &conf.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &conf.access_key_id {
            builder = builder.with_access_key_id(key.expose());
        }
        if let Some(secret) = &conf.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder.build().map_err(S3ConfigError)?;
        Ok(S3BlobStore { store })
    }
}

fn path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| BizError::internal(format!("blob key {key:?}: {e}")))
}

fn store_err(e: object_store::Error) -> BizError {
    BizError::unavailable(format!("blob store: {e}"))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&path(key)?, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&path(key)?).await {
            Ok(found) => found.bytes().await.map(Some).map_err(store_err),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn list_older_than(&self, older_than: DateTime<Utc>) -> Result<Vec<String>> {
        self.store
            .list(None)
            .try_filter(|meta| futures::future::ready(meta.last_modified < older_than))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(store_err)
    }

    async fn ping(&self) -> Result<()> {
        match self
            .store
            .head(&Path::from("qrupload-readiness-probe"))
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }
}
