//! [`BlobStore`] on a local folder: one file per blob, `{root}/{identifier}/{image_id}[.thumb]`.
//! A put is durable when it returns, because a 201 promises the blob is on disk before the row
//! commits. Each blob is created under its own, new name (`O_EXCL`: a put never replaces a
//! file) and written; then every sync it needs runs at once, one blocking thread each: the
//! file's `fdatasync` and its folder's `fsync` (and the folders above it, when the put made the
//! folder). An image and its thumbnail share the folder's sync. No sync waits for another to
//! start, so a device that can flush for several syncs at once overlaps them. The benchmark
//! machine's disk flushes one sync at a time (`scripts/disk_flushes.py` tells): there a put
//! takes about three flushes, though less time than the same syncs in turn on one thread
//! (docs/BENCHMARKS.md, "The upload's floor is the disk's flushes").
//!
//! No reader looks for a blob before a row names it, and the row commits only after the put
//! returns: a crash during a put leaves at worst a partial file that no row names, which the
//! orphan sweep removes. A put that fails removes every file it created.

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
        self.put_all(vec![(key.to_owned(), bytes)]).await
    }

    async fn put_all(&self, blobs: Vec<(String, Bytes)>) -> Result<()> {
        let blobs = blobs
            .into_iter()
            .map(|(key, bytes)| Ok((self.path(&key)?, bytes)))
            .collect::<Result<Vec<_>>>()?;
        let root = self.root.clone();
        // Held until the files are in place: from then on their folders are not empty, so no
        // delete removes them.
        let _writing = self.folders.read().await;
        let created = tokio::task::spawn_blocking(move || create_all(&root, &blobs))
            .await
            .map_err(BizError::internal)?
            .map_err(io_err)?;
        let (paths, files): (Vec<PathBuf>, Vec<File>) = created.files.into_iter().unzip();
        let synced = sync_at_once(files, created.folders).await;
        if synced.is_err() {
            let _ = tokio::task::spawn_blocking(move || remove_all(&paths)).await;
        }
        synced
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

/// What a put wrote and must now sync.
pub(super) struct Created {
    /// Each new file, still open for its `fdatasync`.
    pub(super) files: Vec<(PathBuf, File)>,
    /// Every folder whose entries changed: the files' folders, and the folders above a folder
    /// the put made, up to the root.
    pub(super) folders: Vec<PathBuf>,
}

/// Creates and writes every blob under its own name (which must not exist), making folders as
/// needed; on failure removes the files it created.
pub(super) fn create_all(root: &Path, blobs: &[(PathBuf, Bytes)]) -> std::io::Result<Created> {
    let mut created = Created {
        files: Vec::with_capacity(blobs.len()),
        folders: Vec::new(),
    };
    for (path, bytes) in blobs {
        match write_in_folder(path, bytes) {
            Ok((file, made_folder)) => {
                created.files.push((path.clone(), file));
                let folder = path.parent().unwrap_or(root);
                let above = folder
                    .ancestors()
                    .skip(1)
                    .take_while(|dir| made_folder && dir.starts_with(root));
                for dir in std::iter::once(folder).chain(above) {
                    if !created.folders.iter().any(|f| f == dir) {
                        created.folders.push(dir.to_owned());
                    }
                }
            }
            Err(e) => {
                let paths: Vec<PathBuf> = created.files.drain(..).map(|(p, _)| p).collect();
                remove_all(&paths);
                return Err(e);
            }
        }
    }
    Ok(created)
}

/// Every sync of a put at once, each on a blocking thread: the files' data and the folders'
/// entries are independent, so nothing waits for another sync.
async fn sync_at_once(files: Vec<File>, folders: Vec<PathBuf>) -> Result<()> {
    let mut syncs = Vec::with_capacity(files.len() + folders.len());
    for file in files {
        // `fdatasync` covers the length too, which is all of the metadata a reader needs.
        syncs.push(tokio::task::spawn_blocking(move || file.sync_data()));
    }
    for folder in folders {
        syncs.push(tokio::task::spawn_blocking(move || sync_folder(&folder)));
    }
    let mut first_error = None;
    for sync in futures::future::join_all(syncs).await {
        let result = sync
            .map_err(BizError::internal)
            .and_then(|r| r.map_err(io_err));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// Creates a new file and writes `bytes` (not yet synced), creating its folder; returns the
/// open file and whether it made the folder. Deleting a session's last blob removes the
/// session's folder (see `delete`); when another process sharing the root does that while the
/// folder is being made (`AlreadyExists` from `create_dir_all`) or before the file is created
/// (`NotFound`), the folder is made again. Once the file exists the folder is not empty, so
/// it stays. A file already under the name is an error: a put never replaces a blob.
pub(super) fn write_in_folder(path: &Path, bytes: &[u8]) -> std::io::Result<(File, bool)> {
    const ATTEMPTS: u32 = 4;
    let mut attempt = 1;
    loop {
        let made = match path.parent() {
            Some(dir) if !dir.is_dir() => match std::fs::create_dir_all(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ => false,
        };
        match write_new(path, bytes) {
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < ATTEMPTS => attempt += 1,
            result => return result.map(|file| (file, made)),
        }
    }
}

/// Creates `path` (which must not exist) and writes `bytes`; on a failed write, removes it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let mut file = File::create_new(path)?;
    if let Err(e) = file.write_all(bytes) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
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
