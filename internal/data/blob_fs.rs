//! [`BlobStore`] on a local folder: one file per blob, `{root}/{identifier}/{image_id}[.thumb]`.
//! Writes go to a temporary file that is renamed into place, so a reader never sees half a
//! blob and a crash leaves at worst a temporary file for the orphan sweep.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::biz::{BizError, BlobStore, Result};

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsBlobStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        // Keys are minted by biz; refuse anything that could step outside the root anyway.
        let safe = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            });
        if !safe {
            return Err(BizError::internal(format!("unsafe blob key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let tmp = path.with_extension(format!("tmp-{}", crate::biz::new_id()));
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_err)?;
        }
        tokio::fs::write(&tmp, &bytes).await.map_err(io_err)?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err(e));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        // The session's folder goes with its last blob; failing because it is not empty is fine.
        if let Some(dir) = path.parent().filter(|d| *d != self.root) {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }

    async fn list_older_than(&self, older_than: DateTime<Utc>) -> Result<Vec<String>> {
        let root = self.root.clone();
        let cutoff = SystemTime::from(older_than);
        tokio::task::spawn_blocking(move || list_older(&root, cutoff))
            .await
            .map_err(BizError::internal)?
            .map_err(io_err)
    }

    async fn ping(&self) -> Result<()> {
        // Existing is not enough: blobs are written into folders below the root.
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(BizError::unavailable("blob root: not a folder")),
            Err(e) => Err(BizError::unavailable(format!("blob root: {e}"))),
        }
    }
}

fn list_older(root: &Path, cutoff: SystemTime) -> std::io::Result<Vec<String>> {
    let mut keys = Vec::new();
    for dir in std::fs::read_dir(root)? {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        let session = dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            if file.metadata()?.modified()? < cutoff {
                keys.push(format!("{session}/{}", file.file_name().to_string_lossy()));
            }
        }
    }
    Ok(keys)
}

fn io_err(e: std::io::Error) -> BizError {
    BizError::unavailable(format!("blob store: {e}"))
}
