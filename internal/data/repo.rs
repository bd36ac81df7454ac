//! [`SessionRepo`] on sea-orm: SQLite by default, PostgreSQL in production.
//!
//! Every change is one conditional `UPDATE` that checks the session's state and bumps its
//! version in the same statement, so concurrent requests on any instance cannot overrun a
//! quota or reuse a version; the rows of an upload go in in the same transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use tracing::Instrument;

use tokio::sync::Notify;

use super::{
    commit_outcome_unknown, db_err,
    entity::{image, upload_session},
    outbox::write_events,
};
use crate::{
    biz::{
        AddImagesOutcome, BizError, Image, NewImage, NewSession, ReorderOutcome, Result,
        SessionChange, SessionRepo, SessionStatus, UploadSession, WebhookEvent, WebhookRoutes,
    },
    metrics::Metrics,
};

const OPEN: [&str; 2] = ["open", "scanned"];

pub struct SqlSessionRepo {
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    /// Where webhook events go; empty: no outbox rows are written.
    routes: WebhookRoutes,
    /// Rung after a commit that wrote outbox rows, so this instance's dispatcher need not
    /// wait for its next poll.
    outbox_written: Arc<Notify>,
}

impl SqlSessionRepo {
    pub fn new(db: DatabaseConnection, metrics: Arc<Metrics>) -> Self {
        SqlSessionRepo {
            db,
            metrics,
            routes: WebhookRoutes::default(),
            outbox_written: Arc::new(Notify::new()),
        }
    }

    /// Writes webhook events to the outbox, in the transaction of each change.
    pub fn with_webhooks(mut self, routes: WebhookRoutes) -> Self {
        self.routes = routes;
        self
    }

    /// Rings `notify` after each commit that wrote webhook events.
    pub fn with_outbox_signal(mut self, notify: Arc<Notify>) -> Self {
        self.outbox_written = notify;
        self
    }

    fn outbox_committed(&self) {
        if !self.routes.is_empty() {
            self.outbox_written.notify_one();
        }
    }

    async fn emit<C: ConnectionTrait>(&self, conn: &C, events: Vec<WebhookEvent>) -> Result<()> {
        if self.routes.is_empty() {
            return Ok(());
        }
        write_events(conn, &self.routes, events).await
    }

    /// A conditional change and its event (if it changed anything) in one transaction.
    async fn bump_with_event(
        &self,
        identifier: &str,
        update: sea_orm::UpdateMany<upload_session::Entity>,
        event: fn(&UploadSession, DateTime<Utc>) -> WebhookEvent,
    ) -> Result<Option<UploadSession>> {
        let txn = self.db.begin().await.map_err(db_err)?;
        let session = self.bump(&txn, identifier, update).await?;
        if let Some(session) = &session {
            self.emit(&txn, vec![event(session, Utc::now())]).await?;
        }
        txn.commit().await.map_err(db_err)?;
        if session.is_some() {
            self.outbox_committed();
        }
        Ok(session)
    }

    async fn session_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        identifier: &str,
    ) -> Result<Option<UploadSession>> {
        let model = upload_session::Entity::find_by_id(identifier.to_owned())
            .one(conn)
            .await
            .map_err(db_err)?;
        model.map(to_session).transpose()
    }

    async fn images_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        identifier: &str,
    ) -> Result<Vec<Image>> {
        let rows = image::Entity::find()
            .filter(image::Column::Identifier.eq(identifier))
            .order_by_asc(image::Column::Position)
            .all(conn)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(to_image).collect())
    }

    /// Runs a conditional change of one session: `UPDATE … SET version = version + 1 …
    /// WHERE identifier = ? AND <condition> RETURNING *`, so the change and the row it left are
    /// one statement (a second `SELECT` only on a backend without `RETURNING`).
    async fn bump<C: ConnectionTrait>(
        &self,
        conn: &C,
        identifier: &str,
        update: sea_orm::UpdateMany<upload_session::Entity>,
    ) -> Result<Option<UploadSession>> {
        self.bump_row(conn, identifier, update)
            .await?
            .map(to_session)
            .transpose()
    }

    /// [`Self::bump`], keeping the columns the domain does not carry (`next_position`).
    async fn bump_row<C: ConnectionTrait>(
        &self,
        conn: &C,
        identifier: &str,
        update: sea_orm::UpdateMany<upload_session::Entity>,
    ) -> Result<Option<upload_session::Model>> {
        let update = update
            .col_expr(
                upload_session::Column::Version,
                Expr::col(upload_session::Column::Version).add(1),
            )
            .filter(upload_session::Column::Identifier.eq(identifier));
        if conn.support_returning() {
            let rows = update.exec_with_returning(conn).await.map_err(db_err)?;
            return Ok(rows.into_iter().next());
        }
        let done = update.exec(conn).await.map_err(db_err)?;
        if done.rows_affected == 0 {
            return Ok(None);
        }
        upload_session::Entity::find_by_id(identifier.to_owned())
            .one(conn)
            .await
            .map_err(db_err)
    }
}

#[async_trait]
impl SessionRepo for SqlSessionRepo {
    #[tracing::instrument(skip_all, fields(identifier = %new.identifier))]
    async fn create_session(&self, new: NewSession) -> Result<UploadSession> {
        self.metrics.db_query();
        let model = upload_session::ActiveModel {
            identifier: Set(new.identifier),
            member_id: Set(i64::from(new.member_id)),
            token_hash: Set(new.token_hash),
            status: Set(SessionStatus::Open.as_str().to_owned()),
            image_count: Set(0),
            max_images: Set(to_i32(new.max_images)),
            total_bytes: Set(0),
            max_bytes: Set(to_i64(new.max_bytes)),
            version: Set(1),
            next_position: Set(1),
            expires_at: Set(new.expires_at),
            created_at: Set(new.created_at),
            completed_at: Set(None),
        };
        let txn = self.db.begin().await.map_err(db_err)?;
        let model = upload_session::Entity::insert(model)
            .exec_with_returning(&txn)
            .await
            .map_err(db_err)?;
        let session = to_session(model)?;
        self.emit(
            &txn,
            vec![WebhookEvent::session_created(&session, Utc::now())],
        )
        .await?;
        txn.commit().await.map_err(db_err)?;
        self.outbox_committed();
        Ok(session)
    }

    #[tracing::instrument(skip(self))]
    async fn get_session(&self, identifier: &str) -> Result<Option<UploadSession>> {
        self.metrics.db_query();
        self.session_in(&self.db, identifier).await
    }

    #[tracing::instrument(skip(self))]
    async fn snapshot(&self, identifier: &str) -> Result<Option<(UploadSession, Vec<Image>)>> {
        self.metrics.snapshot_read();
        let txn = self.db.begin().await.map_err(db_err)?;
        let Some(session) = self.session_in(&txn, identifier).await? else {
            return Ok(None);
        };
        let images = self.images_in(&txn, identifier).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(Some((session, images)))
    }

    #[tracing::instrument(skip(self))]
    async fn list_images(&self, identifier: &str) -> Result<Vec<Image>> {
        self.metrics.db_query();
        self.images_in(&self.db, identifier).await
    }

    #[tracing::instrument(skip(self))]
    async fn get_image(&self, image_id: &str) -> Result<Option<Image>> {
        self.metrics.db_query();
        let row = image::Entity::find_by_id(image_id.to_owned())
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(row.map(to_image))
    }

    #[tracing::instrument(skip(self, key))]
    async fn images_by_idempotency_key(&self, identifier: &str, key: &str) -> Result<Vec<Image>> {
        self.metrics.db_query();
        let rows = image::Entity::find()
            .filter(image::Column::Identifier.eq(identifier))
            .filter(image::Column::IdempotencyKey.eq(key))
            .order_by_asc(image::Column::Position)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(to_image).collect())
    }

    #[tracing::instrument(skip(self))]
    async fn mark_scanned(&self, identifier: &str) -> Result<Option<UploadSession>> {
        self.metrics.db_query();
        let update = upload_session::Entity::update_many()
            .col_expr(upload_session::Column::Status, Expr::value("scanned"))
            .filter(upload_session::Column::Status.eq("open"));
        self.bump_with_event(identifier, update, WebhookEvent::session_scanned)
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn complete(
        &self,
        identifier: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UploadSession>> {
        self.metrics.db_query();
        let update = upload_session::Entity::update_many()
            .col_expr(upload_session::Column::Status, Expr::value("completed"))
            .col_expr(upload_session::Column::CompletedAt, Expr::value(now))
            .filter(upload_session::Column::Status.is_in(OPEN))
            .filter(upload_session::Column::ExpiresAt.gt(now));
        self.bump_with_event(identifier, update, WebhookEvent::session_completed)
            .await
    }

    #[tracing::instrument(skip(self, images), fields(count = images.len()))]
    async fn add_images(
        &self,
        identifier: &str,
        images: Vec<NewImage>,
        now: DateTime<Utc>,
    ) -> Result<AddImagesOutcome> {
        self.metrics.db_query();
        let count = images.len() as i32;
        let bytes: i64 = images.iter().map(|i| to_i64(i.size)).sum();
        let txn = self.db.begin().await.map_err(db_err)?;
        // Quota and state are checked by the same statement that takes them.
        let update = upload_session::Entity::update_many()
            .col_expr(
                upload_session::Column::ImageCount,
                Expr::col(upload_session::Column::ImageCount).add(count),
            )
            .col_expr(
                upload_session::Column::TotalBytes,
                Expr::col(upload_session::Column::TotalBytes).add(bytes),
            )
            .col_expr(
                upload_session::Column::NextPosition,
                Expr::col(upload_session::Column::NextPosition).add(count),
            )
            .filter(upload_session::Column::Status.is_in(OPEN))
            .filter(upload_session::Column::ExpiresAt.gt(now))
            .filter(
                Expr::col(upload_session::Column::ImageCount)
                    .add(count)
                    .lte(Expr::col(upload_session::Column::MaxImages)),
            )
            .filter(
                Expr::col(upload_session::Column::TotalBytes)
                    .add(bytes)
                    .lte(Expr::col(upload_session::Column::MaxBytes)),
            );
        let Some(row) = self.bump_row(&txn, identifier, update).await? else {
            txn.rollback().await.map_err(db_err)?;
            // Nothing changed; say why.
            return Ok(match self.session_in(&self.db, identifier).await? {
                None => AddImagesOutcome::NotFound,
                Some(s) if !s.accepts_uploads(now) => AddImagesOutcome::Closed,
                Some(s) if s.image_count + count as u32 > s.max_images => {
                    AddImagesOutcome::TooManyImages
                }
                Some(_) => AddImagesOutcome::TooManyBytes,
            });
        };
        // `next_position` was advanced by `count`; this request owns the positions before it.
        let next_position = row.next_position;
        let session = to_session(row)?;
        let first_position = next_position - count;
        let key = images
            .first()
            .and_then(|i| i.idempotency.clone())
            .map(|(k, _)| k);
        let rows: Vec<image::ActiveModel> = images
            .iter()
            .enumerate()
            .map(|(n, new)| image::ActiveModel {
                id: Set(new.id.clone()),
                identifier: Set(identifier.to_owned()),
                position: Set(first_position + n as i32),
                content_type: Set(new.content_type.clone()),
                source_content_type: Set(Some(new.source_content_type.clone())),
                width: Set(to_i32(new.width)),
                height: Set(to_i32(new.height)),
                size: Set(to_i64(new.size)),
                sha256: Set(new.sha256.clone()),
                idempotency_key: Set(new.idempotency.as_ref().map(|(k, _)| k.clone())),
                idempotency_index: Set(new.idempotency.as_ref().map(|(_, i)| to_i32(*i))),
                created_at: Set(now),
            })
            .collect();
        // The rows as stored come back from the `INSERT` itself: nothing else of the session
        // is read, however many images it holds.
        let inserted = if txn.support_returning() {
            image::Entity::insert_many(rows)
                .exec_with_returning(&txn)
                .await
        } else {
            let ids: Vec<String> = images.iter().map(|n| n.id.clone()).collect();
            match image::Entity::insert_many(rows).exec(&txn).await {
                Ok(_) => {
                    image::Entity::find()
                        .filter(image::Column::Id.is_in(ids))
                        .all(&txn)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let mut inserted = match inserted {
            Ok(inserted) => inserted,
            Err(e) => {
                txn.rollback().await.map_err(db_err)?;
                if let (Some(SqlErr::UniqueConstraintViolation(_)), Some(key)) = (e.sql_err(), key)
                {
                    let images = self.images_by_idempotency_key(identifier, &key).await?;
                    return Ok(AddImagesOutcome::Duplicate(images));
                }
                return Err(db_err(e));
            }
        };
        inserted.sort_by_key(|m| m.position);
        let images: Vec<Image> = inserted.into_iter().map(to_image).collect();
        self.emit(&txn, WebhookEvent::images_added(&session, &images, now))
            .await?;
        if let Err(e) = txn.commit().await {
            if commit_outcome_unknown(&e) {
                tracing::warn!(error = %e, "no answer to an upload's COMMIT");
                return Ok(AddImagesOutcome::InDoubt);
            }
            return Err(db_err(e));
        }
        self.outbox_committed();
        Ok(AddImagesOutcome::Added { session, images })
    }

    #[tracing::instrument(skip(self))]
    async fn delete_image(
        &self,
        identifier: &str,
        image_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UploadSession>> {
        self.metrics.db_query();
        let txn = self.db.begin().await.map_err(db_err)?;
        let Some(row) = image::Entity::find_by_id(image_id.to_owned())
            .filter(image::Column::Identifier.eq(identifier))
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        image::Entity::delete_by_id(image_id.to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        let update = upload_session::Entity::update_many()
            .col_expr(
                upload_session::Column::ImageCount,
                Expr::col(upload_session::Column::ImageCount).sub(1),
            )
            .col_expr(
                upload_session::Column::TotalBytes,
                Expr::col(upload_session::Column::TotalBytes).sub(row.size),
            );
        let session = self.bump(&txn, identifier, update).await?;
        if let Some(session) = &session {
            let event = WebhookEvent::image_deleted(session, &to_image(row), now);
            self.emit(&txn, vec![event]).await?;
        }
        txn.commit().await.map_err(db_err)?;
        if session.is_some() {
            self.outbox_committed();
        }
        Ok(session)
    }

    #[tracing::instrument(skip(self, image_ids), fields(count = image_ids.len()))]
    async fn reorder_images(
        &self,
        identifier: &str,
        image_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<ReorderOutcome> {
        self.metrics.db_query();
        let count = i32::try_from(image_ids.len()).unwrap_or(i32::MAX);
        let txn = self.db.begin().await.map_err(db_err)?;
        // The session row first: its lock orders this reorder after (or before) any upload
        // or delete in flight, so the list checked below is the one the positions apply to.
        let update = upload_session::Entity::update_many()
            .col_expr(
                upload_session::Column::NextPosition,
                Expr::value(count.saturating_add(1)),
            )
            .filter(upload_session::Column::Status.is_in(OPEN))
            .filter(upload_session::Column::ExpiresAt.gt(now));
        let Some(session) = self.bump(&txn, identifier, update).await? else {
            txn.rollback().await.map_err(db_err)?;
            return Ok(match self.session_in(&self.db, identifier).await? {
                None => ReorderOutcome::NotFound,
                Some(_) => ReorderOutcome::Closed,
            });
        };
        let current = self.images_in(&txn, identifier).await?;
        let same = current.len() == image_ids.len()
            && image_ids
                .iter()
                .all(|id| current.iter().any(|i| &i.id == id));
        if !same {
            txn.rollback().await.map_err(db_err)?;
            return Ok(ReorderOutcome::Mismatch);
        }
        for (n, id) in image_ids.iter().enumerate() {
            image::Entity::update_many()
                .col_expr(image::Column::Position, Expr::value(n as i32 + 1))
                .filter(image::Column::Id.eq(id.as_str()))
                .filter(image::Column::Identifier.eq(identifier))
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        let images = self.images_in(&txn, identifier).await?;
        let event = WebhookEvent::images_reordered(&session, image_ids.to_vec(), now);
        self.emit(&txn, vec![event]).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(ReorderOutcome::Reordered { session, images })
    }

    // Called every second by the janitor: no span of its own (an exported trace per instance
    // per second would bury the rest); the work, when there is some, gets one below.
    async fn expire_due(&self, now: DateTime<Utc>) -> Result<Vec<SessionChange>> {
        self.metrics.db_query();
        let due: Vec<String> = upload_session::Entity::find()
            .select_only()
            .column(upload_session::Column::Identifier)
            .filter(upload_session::Column::Status.is_in(OPEN))
            .filter(upload_session::Column::ExpiresAt.lte(now))
            .limit(500)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let span = tracing::info_span!("expire_due", sessions = due.len());
        async move {
            let mut changes = Vec::with_capacity(due.len());
            for identifier in due {
                let update = upload_session::Entity::update_many()
                    .col_expr(upload_session::Column::Status, Expr::value("expired"))
                    .filter(upload_session::Column::Status.is_in(OPEN))
                    .filter(upload_session::Column::ExpiresAt.lte(now));
                if let Some(session) = self
                    .bump_with_event(&identifier, update, WebhookEvent::session_expired)
                    .await?
                {
                    changes.push(SessionChange {
                        identifier,
                        version: session.version,
                    });
                }
            }
            Ok(changes)
        }
        .instrument(span)
        .await
    }

    // A janitor query that usually finds nothing: no span (see `expire_due`).
    async fn retention_due(&self, before: DateTime<Utc>, limit: u64) -> Result<Vec<String>> {
        self.metrics.db_query();
        upload_session::Entity::find()
            .select_only()
            .column(upload_session::Column::Identifier)
            .filter(upload_session::Column::Status.ne("completed"))
            .filter(upload_session::Column::ExpiresAt.lt(before))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)
    }

    #[tracing::instrument(skip(self))]
    async fn delete_session(&self, identifier: &str) -> Result<Vec<Image>> {
        self.metrics.db_query();
        let txn = self.db.begin().await.map_err(db_err)?;
        let images = self.images_in(&txn, identifier).await?;
        image::Entity::delete_many()
            .filter(image::Column::Identifier.eq(identifier))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        upload_session::Entity::delete_by_id(identifier.to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(images)
    }

    async fn image_exists(&self, image_id: &str) -> Result<bool> {
        self.metrics.db_query();
        let found = image::Entity::find_by_id(image_id.to_owned())
            .select_only()
            .column(image::Column::Id)
            .into_tuple::<String>()
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(db_err)
    }
}

fn to_session(m: upload_session::Model) -> Result<UploadSession> {
    let status = SessionStatus::parse(&m.status)
        .ok_or_else(|| BizError::internal(format!("unknown session status {:?}", m.status)))?;
    Ok(UploadSession {
        identifier: m.identifier,
        member_id: u32::try_from(m.member_id).map_err(BizError::internal)?,
        token_hash: m.token_hash,
        status,
        image_count: to_u32(m.image_count),
        max_images: to_u32(m.max_images),
        total_bytes: to_u64(m.total_bytes),
        max_bytes: to_u64(m.max_bytes),
        version: to_u64(m.version),
        expires_at: m.expires_at,
        created_at: m.created_at,
    })
}

fn to_image(m: image::Model) -> Image {
    Image {
        id: m.id,
        identifier: m.identifier,
        source_content_type: m
            .source_content_type
            .unwrap_or_else(|| m.content_type.clone()),
        content_type: m.content_type,
        width: to_u32(m.width),
        height: to_u32(m.height),
        size: to_u64(m.size),
        sha256: m.sha256,
        position: to_u32(m.position),
        created_at: m.created_at,
    }
}

/// Stored counts are never negative; a corrupt one reads as zero rather than wrapping.
fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
