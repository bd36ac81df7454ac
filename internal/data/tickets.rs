//! [`StreamTicketRepo`] on sea-orm: one row per unspent ticket, keyed by its hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::{db_err, entity::stream_ticket};
use crate::biz::{BizError, NewStreamTicket, Result, StreamTicketRepo};

pub struct SqlStreamTicketRepo {
    db: DatabaseConnection,
}

impl SqlStreamTicketRepo {
    pub fn new(db: DatabaseConnection) -> Self {
        SqlStreamTicketRepo { db }
    }
}

#[async_trait]
impl StreamTicketRepo for SqlStreamTicketRepo {
    #[tracing::instrument(skip_all, fields(identifier = %ticket.identifier))]
    async fn insert(&self, ticket: NewStreamTicket, now: DateTime<Utc>) -> Result<()> {
        // Tickets nobody used would otherwise pile up; the index on expiry makes this cheap.
        stream_ticket::Entity::delete_many()
            .filter(stream_ticket::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        stream_ticket::Entity::insert(stream_ticket::ActiveModel {
            ticket_hash: Set(ticket.ticket_hash),
            identifier: Set(ticket.identifier),
            member_id: Set(i64::from(ticket.member_id)),
            member_expires_at: Set(ticket.member_expires_at),
            expires_at: Set(ticket.expires_at),
            created_at: Set(ticket.created_at),
        })
        .exec(&self.db)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn take(&self, ticket_hash: &str) -> Result<Option<NewStreamTicket>> {
        let Some(row) = stream_ticket::Entity::find_by_id(ticket_hash.to_owned())
            .one(&self.db)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        // Only the attempt whose DELETE removed the row gets it: two attempts with the same
        // ticket, on one instance or two, cannot both pass.
        let done = stream_ticket::Entity::delete_by_id(ticket_hash.to_owned())
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        if done.rows_affected != 1 {
            return Ok(None);
        }
        Ok(Some(NewStreamTicket {
            ticket_hash: row.ticket_hash,
            identifier: row.identifier,
            member_id: u32::try_from(row.member_id).map_err(BizError::internal)?,
            member_expires_at: row.member_expires_at,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }))
    }
}
