//! [`TusRepo`] on sea-orm: one row per resumable upload. The offset moves only by a
//! compare-and-set (`UPDATE … WHERE upload_offset = from`), so two instances taking requests
//! for one upload can never both append at the same offset.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, Query},
};

use super::{
    db_err,
    entity::{tus_upload, upload_session},
};
use crate::biz::{Result, TusRepo, TusUpload};

const RECEIVING: &str = "receiving";
const FINISHED: &str = "finished";

pub struct SqlTusRepo {
    db: DatabaseConnection,
}

impl SqlTusRepo {
    pub fn new(db: DatabaseConnection) -> Self {
        SqlTusRepo { db }
    }
}

#[async_trait]
impl TusRepo for SqlTusRepo {
    #[tracing::instrument(skip_all, fields(upload_id = %upload.id))]
    async fn create(&self, upload: &TusUpload) -> Result<()> {
        let row = tus_upload::ActiveModel {
            id: Set(upload.id.clone()),
            identifier: Set(upload.identifier.clone()),
            upload_length: Set(to_i64(upload.length)),
            upload_offset: Set(to_i64(upload.offset)),
            parts: Set(upload.parts.join(",")),
            metadata: Set(upload.metadata.clone()),
            state: Set(RECEIVING.into()),
            image_id: Set(None),
            created_at: Set(upload.created_at),
            expires_at: Set(upload.expires_at),
        };
        tus_upload::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn get(&self, id: &str) -> Result<Option<TusUpload>> {
        let row = tus_upload::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(row.map(to_upload))
    }

    #[tracing::instrument(skip_all, fields(upload_id = %upload.id, to))]
    async fn append(&self, upload: &TusUpload, to: u64, parts: &[String]) -> Result<bool> {
        let mut all = upload.parts.clone();
        all.extend(parts.iter().cloned());
        // The offset names the parts: equal offsets mean equal part lists.
        let done = tus_upload::Entity::update_many()
            .col_expr(tus_upload::Column::UploadOffset, Expr::value(to_i64(to)))
            .col_expr(tus_upload::Column::Parts, Expr::value(all.join(",")))
            .filter(tus_upload::Column::Id.eq(upload.id.as_str()))
            .filter(tus_upload::Column::UploadOffset.eq(to_i64(upload.offset)))
            .filter(tus_upload::Column::State.eq(RECEIVING))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }

    #[tracing::instrument(skip(self))]
    async fn mark_finished(&self, id: &str, image_id: &str) -> Result<bool> {
        let done = tus_upload::Entity::update_many()
            .col_expr(tus_upload::Column::State, Expr::value(FINISHED))
            .col_expr(tus_upload::Column::ImageId, Expr::value(image_id))
            .col_expr(tus_upload::Column::Parts, Expr::value(""))
            .filter(tus_upload::Column::Id.eq(id))
            .filter(tus_upload::Column::State.eq(RECEIVING))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }

    #[tracing::instrument(skip(self))]
    async fn delete(&self, id: &str) -> Result<bool> {
        let done = tus_upload::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected > 0)
    }

    #[tracing::instrument(skip(self, metadata))]
    async fn find_unfinished(
        &self,
        identifier: &str,
        metadata: &str,
        length: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<TusUpload>> {
        let row = tus_upload::Entity::find()
            .filter(tus_upload::Column::Identifier.eq(identifier))
            .filter(tus_upload::Column::Metadata.eq(metadata))
            .filter(tus_upload::Column::UploadLength.eq(to_i64(length)))
            .filter(tus_upload::Column::State.eq(RECEIVING))
            .filter(tus_upload::Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(row.map(to_upload))
    }

    #[tracing::instrument(skip(self))]
    async fn reserved(&self, identifier: &str) -> Result<(u32, u64)> {
        let now = Utc::now();
        let rows: Vec<i64> = tus_upload::Entity::find()
            .select_only()
            .column(tus_upload::Column::UploadLength)
            .filter(tus_upload::Column::Identifier.eq(identifier))
            .filter(tus_upload::Column::State.eq(RECEIVING))
            .filter(tus_upload::Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let count = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let bytes = rows.iter().map(|&n| to_u64(n)).sum();
        Ok((count, bytes))
    }

    #[tracing::instrument(skip(self))]
    async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<TusUpload>> {
        let open_sessions = Query::select()
            .column(upload_session::Column::Identifier)
            .from(upload_session::Entity)
            .and_where(upload_session::Column::Status.is_in(["open", "scanned"]))
            .and_where(upload_session::Column::ExpiresAt.gt(now))
            .to_owned();
        let rows = tus_upload::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(tus_upload::Column::State.eq(RECEIVING))
                            .add(tus_upload::Column::ExpiresAt.lte(now)),
                    )
                    .add(tus_upload::Column::Identifier.not_in_subquery(open_sessions)),
            )
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(to_upload).collect())
    }
}

fn to_upload(m: tus_upload::Model) -> TusUpload {
    TusUpload {
        id: m.id,
        identifier: m.identifier,
        length: to_u64(m.upload_length),
        offset: to_u64(m.upload_offset),
        parts: m
            .parts
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        metadata: m.metadata,
        image_id: m.image_id.filter(|_| m.state == FINISHED),
        created_at: m.created_at,
        expires_at: m.expires_at,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
