//! The webhook outbox: rows written by the repository in the transaction of each change, and
//! [`WebhookOutbox`] for the dispatcher that delivers them.
//!
//! Claiming leases rows (`lease_until`) with one `UPDATE … WHERE id IN (SELECT … FOR UPDATE
//! SKIP LOCKED)` on PostgreSQL, so instances never take one row at once; SQLite has one
//! writer and one instance. A row is not claimed while an earlier row of the same session and
//! endpoint waits for its retry or is leased, so a session's events reach a receiver in order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait},
};

use super::{db_err, entity::webhook_outbox};
use crate::biz::{
    BizError, OutboxStats, PendingDelivery, Result, WebhookEvent, WebhookOutbox, WebhookRoutes,
};

/// Writes one row per event and interested endpoint, on the caller's transaction.
pub(crate) async fn write_events<C: ConnectionTrait>(
    conn: &C,
    routes: &WebhookRoutes,
    events: Vec<WebhookEvent>,
) -> Result<()> {
    let mut rows = Vec::new();
    for event in events {
        let payload = serde_json::to_string(&event).map_err(BizError::internal)?;
        for endpoint in routes.targets(event.kind) {
            rows.push(webhook_outbox::ActiveModel {
                event_id: Set(event.id.clone()),
                endpoint: Set(endpoint.to_owned()),
                identifier: Set(event.session.identifier.clone()),
                event_type: Set(event.kind.as_str().to_owned()),
                payload: Set(payload.clone()),
                status: Set("pending".into()),
                attempts: Set(0),
                created_at: Set(event.created_at),
                next_attempt_at: Set(event.created_at),
                lease_until: Set(None),
                ..Default::default()
            });
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    webhook_outbox::Entity::insert_many(rows)
        .exec(conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub struct SqlWebhookOutbox {
    db: DatabaseConnection,
}

impl SqlWebhookOutbox {
    pub fn new(db: DatabaseConnection) -> Self {
        SqlWebhookOutbox { db }
    }
}

#[async_trait]
impl WebhookOutbox for SqlWebhookOutbox {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<PendingDelivery>> {
        let backend = self.db.get_database_backend();
        let lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE OF w SKIP LOCKED"
        } else {
            ""
        };
        let mut n = 0;
        let mut p = || {
            n += 1;
            if backend == DatabaseBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let (lease, due, free, waiting_due, waiting_free, max) = (p(), p(), p(), p(), p(), p());
        // A row waits while an earlier row of its session and endpoint is pending and not
        // claimable (backing off, or leased by another round): events go out in order.
        let sql = format!(
            "UPDATE webhook_outbox SET lease_until = {lease} WHERE id IN (\
               SELECT w.id FROM webhook_outbox w WHERE w.status = 'pending' \
               AND w.next_attempt_at <= {due} \
               AND (w.lease_until IS NULL OR w.lease_until <= {free}) \
               AND NOT EXISTS (SELECT 1 FROM webhook_outbox e WHERE e.status = 'pending' \
                 AND e.endpoint = w.endpoint AND e.identifier = w.identifier AND e.id < w.id \
                 AND (e.next_attempt_at > {waiting_due} OR e.lease_until > {waiting_free})) \
               ORDER BY w.id LIMIT {max}{lock}) \
             RETURNING *"
        );
        let rows = webhook_outbox::Model::find_by_statement(Statement::from_sql_and_values(
            backend,
            sql,
            [
                lease_until.into(),
                now.into(),
                now.into(),
                now.into(),
                now.into(),
                (limit as i64).into(),
            ],
        ))
        .all(&self.db)
        .await
        .map_err(db_err)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str::<WebhookEvent>(&row.payload) {
                Ok(event) => claimed.push(PendingDelivery {
                    row: row.id,
                    endpoint: row.endpoint,
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    event,
                }),
                Err(e) => {
                    tracing::error!(row = row.id, error = %e, "unreadable outbox row; marked dead");
                    self.dead(row.id, u32::try_from(row.attempts).unwrap_or(0))
                        .await?;
                }
            }
        }
        // RETURNING gives no order; deliveries go oldest first.
        claimed.sort_by_key(|d| d.row);
        Ok(claimed)
    }

    async fn delivered(&self, row: i64) -> Result<()> {
        webhook_outbox::Entity::delete_by_id(row)
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn retry_at(
        &self,
        row: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<()> {
        webhook_outbox::Entity::update_many()
            .col_expr(
                webhook_outbox::Column::Attempts,
                Expr::value(attempts as i32),
            )
            .col_expr(
                webhook_outbox::Column::NextAttemptAt,
                Expr::value(next_attempt_at),
            )
            .col_expr(
                webhook_outbox::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_outbox::Column::Id.eq(row))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn dead(&self, row: i64, attempts: u32) -> Result<()> {
        webhook_outbox::Entity::update_many()
            .col_expr(webhook_outbox::Column::Status, Expr::value("dead"))
            .col_expr(
                webhook_outbox::Column::Attempts,
                Expr::value(attempts as i32),
            )
            .filter(webhook_outbox::Column::Id.eq(row))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats> {
        let (pending, oldest): (i64, Option<DateTime<Utc>>) = webhook_outbox::Entity::find()
            .select_only()
            .column_as(Expr::col(webhook_outbox::Column::Id).count(), "pending")
            .column_as(Expr::col(webhook_outbox::Column::CreatedAt).min(), "oldest")
            .filter(webhook_outbox::Column::Status.eq("pending"))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err)?
            .unwrap_or((0, None));
        Ok(OutboxStats {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending: oldest,
        })
    }
}
