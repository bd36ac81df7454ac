//! [`BlobStore`] on a local folder: one file per blob, `{root}/{identifier}/{image_id}[.thumb]`.
//! A put is durable when it returns, because a 201 promises the blob is on disk before the row
//! commits: the bytes go to a temporary file that is synced (`fdatasync`), renamed into place
//! and made to stay there by syncing its folder (and the folders above it, when the put made
//! the folder). A reader never sees half a blob; a crash leaves at worst a temporary file for
//! the orphan sweep, and a failed put removes its own.

use std::{
    fs::File,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::biz::{BizError, BlobStore, Result};

pub struct FsBlobStore {
    root: PathBuf,
    /// Held shared by a write while it makes its session's folder and puts a file in it, and
    /// exclusively by a delete while it removes a folder it emptied: this process never removes
    /// a folder under one of its own writes. Other processes sharing the root are covered by
    /// [`write_in_folder`]'s retries.
    folders: tokio::sync::RwLock<()>,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsBlobStore {
            root,
            folders: tokio::sync::RwLock::new(()),
        })
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
        let root = self.root.clone();
        // Held until the file is in place: from then on the folder is not empty, so no delete
        // removes it.
        let _writing = self.folders.read().await;
        tokio::task::spawn_blocking(move || put_durably(&root, &tmp, &path, &bytes))
            .await
            .map_err(BizError::internal)?
            .map_err(io_err)
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
            let _removing = self.folders.write().await;
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

/// The blocking body of a put: one hop to the blocking pool for the whole of it.
fn put_durably(root: &Path, tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let made_folder = write_in_folder(tmp, bytes)?;
    publish(tmp, path)?;
    if made_folder {
        // The new folder's own name must survive too, and so on up to the root.
        let synced = path
            .parent()
            .into_iter()
            .flat_map(Path::ancestors)
            .skip(1)
            .take_while(|dir| dir.starts_with(root))
            .try_for_each(sync_folder);
        if let Err(e) = synced {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    }
    Ok(())
}

/// Writes a new file and syncs its bytes, creating its folder; says whether it made the folder.
/// Deleting a session's last blob removes the session's folder (see `delete`); when another
/// process sharing the root does that while the folder is being made (`AlreadyExists` from
/// `create_dir_all`) or before the file is written (`NotFound`), the folder is made again.
/// Once the file is written the folder is not empty, so it stays.
pub(super) fn write_in_folder(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    const ATTEMPTS: u32 = 4;
    let mut attempt = 1;
    loop {
        let result = match path.parent() {
            Some(dir) if !dir.is_dir() => std::fs::create_dir_all(dir).map(|()| true),
            _ => Ok(false),
        };
        let result = result.and_then(|made| write_synced(path, bytes).map(|()| made));
        match result {
            Err(e)
                if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AlreadyExists)
                    && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Creates `path` (which must not exist), writes `bytes` and syncs them; on failure after the
/// file was created, removes it.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create_new(path)?;
    // `fdatasync` covers the length too, which is all of the metadata a reader needs.
    let written = file.write_all(bytes).and_then(|()| file.sync_data());
    if written.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Renames the synced temporary file into place and syncs the folder, so the name survives a
/// power cut; on failure nothing of this put is left under either name.
pub(super) fn publish(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    let synced = match path.parent() {
        Some(dir) => sync_folder(dir),
        None => Ok(()),
    };
    if synced.is_err() {
        let _ = std::fs::remove_file(path);
    }
    synced
}

fn sync_folder(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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
