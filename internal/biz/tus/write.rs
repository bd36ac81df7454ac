//! One PATCH of a tus upload in progress: bytes buffered up to [`CHUNK`](super::CHUNK), written
//! as a part, appended to the row by compare-and-set; the first bytes sniffed; the request's
//! checksum verified before any of its parts counts.

use std::sync::Arc;

use bytes::BytesMut;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{CHUNK, SNIFF_BYTES, TusUpload, TusUsecase};
use crate::biz::{BizError, ProgressReporter, Result, imaging, secret::new_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(ChecksumAlgorithm::Sha1),
            "sha256" => Some(ChecksumAlgorithm::Sha256),
            _ => None,
        }
    }
}

/// A request's `Upload-Checksum`: the digest its whole body must have.
#[derive(Debug, Clone)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// One PATCH in progress: bytes buffered up to [`CHUNK`], then written as a part.
pub struct TusWrite {
    tus: Arc<TusUsecase>,
    token: String,
    upload: TusUpload,
    /// Offset after every byte seen so far in this request.
    received: u64,
    buffer: BytesMut,
    /// The first bytes of the file, until its format is known.
    sniff: Option<BytesMut>,
    checksum: Option<Checksum>,
    hasher: Option<Hasher>,
    /// Parts written but not yet appended (a checksummed request appends at its end).
    pending: Vec<String>,
    reporter: ProgressReporter,
}

/// What a PATCH left: the upload now, and whether this request finished it.
#[derive(Debug)]
pub struct PatchOutcome {
    pub upload: TusUpload,
    pub finished_now: bool,
}

impl TusWrite {
    pub(super) fn new(
        tus: Arc<TusUsecase>,
        token: &str,
        upload: TusUpload,
        checksum: Option<Checksum>,
        reporter: ProgressReporter,
    ) -> Self {
        TusWrite {
            tus,
            token: token.to_owned(),
            received: upload.offset,
            sniff: (upload.offset == 0).then(BytesMut::new),
            hasher: checksum.as_ref().map(|c| Hasher::new(c.algorithm)),
            checksum,
            buffer: BytesMut::new(),
            pending: Vec::new(),
            upload,
            reporter,
        }
    }

    pub fn upload(&self) -> &TusUpload {
        &self.upload
    }

    /// Takes the next bytes of the body. A file whose first bytes are no image is refused
    /// here, and the upload terminated.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.received + bytes.len() as u64 > self.upload.length {
            let e = BizError::PayloadTooLarge(
                "the request carries more bytes than Upload-Length".into(),
            );
            self.abandon().await;
            return Err(e);
        }
        if let Some(head) = &mut self.sniff {
            let want = SNIFF_BYTES.saturating_sub(head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..want]);
            let enough = head.len() >= SNIFF_BYTES || head.len() as u64 == self.upload.length;
            if enough {
                if imaging::detect(head).is_none() {
                    let e = BizError::UnsupportedMediaType;
                    self.abandon().await;
                    self.tus.refused(&self.upload, &e).await;
                    return Err(e);
                }
                self.sniff = None;
            }
        }
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        self.received += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush_part().await?;
            if self.checksum.is_none() {
                self.append().await?;
            }
        }
        self.reporter.advance(self.received).await;
        Ok(())
    }

    /// The body arrived whole: checks the checksum, appends, and finishes the file if this
    /// was its last byte.
    pub async fn complete(mut self) -> Result<PatchOutcome> {
        if let (Some(checksum), Some(hasher)) = (self.checksum.take(), self.hasher.take())
            && hasher.finish() != checksum.digest
        {
            self.abandon().await;
            return Err(BizError::ChecksumMismatch);
        }
        self.flush_part().await?;
        self.append().await?;
        self.reporter.flush().await;
        if self.upload.offset == self.upload.length && !self.upload.is_finished() {
            let upload = self.upload.clone();
            let tus = self.tus.clone();
            return match tus
                .finish(&self.token, upload.clone(), &mut self.reporter)
                .await
            {
                Ok((upload, finished_now)) => Ok(PatchOutcome {
                    upload,
                    finished_now,
                }),
                Err(e) => {
                    tus.refused(&upload, &e).await;
                    Err(e)
                }
            };
        }
        Ok(PatchOutcome {
            upload: self.upload,
            finished_now: false,
        })
    }

    /// The body broke off (the connection was cut, or it arrived too slowly): what arrived
    /// is kept, unless a checksum covers the whole body. Returns the offset now.
    pub async fn interrupted(mut self) -> Result<u64> {
        if self.checksum.is_some() {
            self.abandon().await;
            return Ok(self.upload.offset);
        }
        self.flush_part().await?;
        self.append().await?;
        self.reporter.flush().await;
        Ok(self.upload.offset)
    }

    /// Writes the buffer as a part blob (not yet named by the row).
    async fn flush_part(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = new_id();
        let bytes = std::mem::take(&mut self.buffer).freeze();
        self.tus
            .blobs
            .put(&self.upload.part_key(&part), bytes)
            .await?;
        self.pending.push(part);
        Ok(())
    }

    /// Appends the pending parts to the row, if no other request moved the offset meanwhile.
    async fn append(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let to = self.received - self.buffer.len() as u64;
        let parts = std::mem::take(&mut self.pending);
        match self.tus.repo.append(&self.upload, to, &parts).await {
            Ok(true) => {
                self.upload.offset = to;
                self.upload.parts.extend(parts);
                Ok(())
            }
            Ok(false) => {
                self.pending = parts;
                self.abandon().await;
                let current = self
                    .tus
                    .repo
                    .get(&self.upload.id)
                    .await?
                    .map_or(self.upload.offset, |u| u.offset);
                Err(BizError::OffsetMismatch {
                    given: self.upload.offset,
                    current,
                })
            }
            Err(e) => {
                self.pending = parts;
                self.abandon().await;
                Err(e)
            }
        }
    }

    /// Deletes what this request wrote but did not append.
    async fn abandon(&mut self) {
        self.buffer.clear();
        for part in std::mem::take(&mut self.pending) {
            let key = self.upload.part_key(&part);
            if let Err(e) = self.tus.blobs.delete(&key).await {
                tracing::warn!(key, error = ?e, "part delete failed; the orphan sweep retries");
            }
        }
    }
}

impl From<PatchOutcome> for TusUpload {
    fn from(outcome: PatchOutcome) -> Self {
        outcome.upload
    }
}
