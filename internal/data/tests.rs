//! Repository tests against SQLite (always) and PostgreSQL: required when
//! `QRUPLOAD_TEST_POSTGRES_URL` is set, else tried at the local default and skipped if absent.
//! Each PostgreSQL test gets a database of its own, dropped afterwards.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::*;
use crate::{
    biz::{AddImagesOutcome, NewImage, NewSession, SessionRepo, SessionStatus, UploadSession},
    metrics::Metrics,
};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated database and how to get rid of it.
struct TestDb {
    name: &'static str,
    db: DatabaseConnection,
    drop_pg: Option<(DatabaseConnection, String)>,
}

impl TestDb {
    async fn cleanup(self) {
        let _ = self.db.close().await;
        if let Some((admin, name)) = self.drop_pg {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A fresh, empty PostgreSQL database, or `None` when PostgreSQL is absent and not required.
async fn fresh_postgres() -> Option<(DatabaseConnection, String, String)> {
    let required = std::env::var("QRUPLOAD_TEST_POSTGRES_URL").ok();
    let url = required.clone().unwrap_or_else(|| DEFAULT_PG.to_owned());
    let admin = match connect(&url, 2).await {
        Ok(db) => db,
        Err(e) if required.is_none() => {
            eprintln!("skipping PostgreSQL: {e} (set QRUPLOAD_TEST_POSTGRES_URL to require it)");
            return None;
        }
        Err(e) => panic!("QRUPLOAD_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}"),
    };
    let name = format!(
        "qrupload_t_{}",
        crate::biz::new_id().to_lowercase().replace('-', "_")
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    Some((admin, name.clone(), format!("{base}/{name}")))
}

async fn databases() -> Vec<TestDb> {
    let sqlite = connect("sqlite::memory:", 1).await.expect("sqlite");
    migrate_up(&sqlite).await.expect("migrate sqlite");
    let mut dbs = vec![TestDb {
        name: "sqlite",
        db: sqlite,
        drop_pg: None,
    }];
    if let Some((admin, name, url)) = fresh_postgres().await {
        let db = connect(&url, 8).await.expect("connect test database");
        migrate_up(&db).await.expect("migrate postgres");
        dbs.push(TestDb {
            name: "postgres",
            db,
            drop_pg: Some((admin, name)),
        });
    }
    dbs
}

fn repo(db: &DatabaseConnection) -> SqlSessionRepo {
    SqlSessionRepo::new(db.clone(), Arc::new(Metrics::default()))
}

/// A session made through `repo` from [`new_session`].
async fn create_session(
    repo: &SqlSessionRepo,
    max_images: u32,
    max_bytes: u64,
    ttl: Duration,
) -> UploadSession {
    repo.create_session(new_session(max_images, max_bytes, ttl))
        .await
        .expect("create")
}

fn new_session(max_images: u32, max_bytes: u64, ttl: Duration) -> NewSession {
    let now = Utc::now();
    NewSession {
        identifier: crate::biz::new_id(),
        member_id: 42,
        token_hash: crate::biz::hash_token("t"),
        max_images,
        max_bytes,
        expires_at: now + ttl,
        created_at: now,
    }
}

fn new_image(size: u64, key: Option<(&str, u32)>) -> NewImage {
    NewImage {
        id: crate::biz::new_id(),
        content_type: "image/jpeg".into(),
        source_content_type: "image/jpeg".into(),
        width: 4,
        height: 3,
        size,
        sha256: "ab".repeat(32),
        idempotency: key.map(|(k, i)| (k.to_owned(), i)),
    }
}

#[tokio::test]
async fn sessions_change_with_their_version() {
    for t in databases().await {
        let repo = repo(&t.db);
        let s = create_session(&repo, 3, 1000, Duration::minutes(5)).await;
        assert_eq!(
            (s.version, s.status, s.member_id),
            (1, SessionStatus::Open, 42),
            "{}",
            t.name
        );
        let got = repo
            .get_session(&s.identifier)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(got, s, "{}", t.name);
        assert!(repo.get_session("nope").await.expect("get").is_none());

        let scanned = repo
            .mark_scanned(&s.identifier)
            .await
            .expect("scan")
            .expect("was open");
        assert_eq!(
            (scanned.version, scanned.status),
            (2, SessionStatus::Scanned)
        );
        assert!(
            repo.mark_scanned(&s.identifier)
                .await
                .expect("scan")
                .is_none(),
            "only once"
        );

        let done = repo
            .complete(&s.identifier, Utc::now())
            .await
            .expect("complete")
            .expect("open");
        assert_eq!((done.version, done.status), (3, SessionStatus::Completed));
        assert!(
            repo.complete(&s.identifier, Utc::now())
                .await
                .expect("again")
                .is_none()
        );
        let (snap, images) = repo
            .snapshot(&s.identifier)
            .await
            .expect("snapshot")
            .expect("exists");
        assert_eq!(snap.version, 3);
        assert!(images.is_empty());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn images_respect_quota_positions_and_idempotency() {
    for t in databases().await {
        let repo = repo(&t.db);
        let s = create_session(&repo, 3, 1000, Duration::minutes(5)).await;
        let id = &s.identifier;
        let now = Utc::now();

        let AddImagesOutcome::Added { session, images } = repo
            .add_images(
                id,
                vec![
                    new_image(100, Some(("k1", 0))),
                    new_image(200, Some(("k1", 1))),
                ],
                now,
            )
            .await
            .expect("add")
        else {
            panic!("{}: two images fit", t.name);
        };
        assert_eq!(
            (session.image_count, session.total_bytes, session.version),
            (2, 300, 2)
        );
        assert_eq!(
            images.iter().map(|i| i.position).collect::<Vec<_>>(),
            vec![1, 2]
        );

        // The same key again: the first request's images, nothing added.
        let dup = repo
            .add_images(id, vec![new_image(100, Some(("k1", 0)))], now)
            .await
            .expect("dup");
        assert!(
            matches!(dup, AddImagesOutcome::Duplicate(ref i) if i.len() == 2),
            "{}: {dup:?}",
            t.name
        );
        assert_eq!(
            repo.images_by_idempotency_key(id, "k1")
                .await
                .expect("by key")
                .len(),
            2
        );

        // Quota: count and bytes, checked by the same statement that takes them.
        let many = repo
            .add_images(id, vec![new_image(1, None), new_image(1, None)], now)
            .await
            .expect("too many");
        assert!(
            matches!(many, AddImagesOutcome::TooManyImages),
            "{}: {many:?}",
            t.name
        );
        let heavy = repo
            .add_images(id, vec![new_image(701, None)], now)
            .await
            .expect("too big");
        assert!(
            matches!(heavy, AddImagesOutcome::TooManyBytes),
            "{}: {heavy:?}",
            t.name
        );

        // Delete frees its quota and bumps the version; positions keep counting up.
        let first = images[0].id.clone();
        let after = repo
            .delete_image(id, &first, now)
            .await
            .expect("delete")
            .expect("existed");
        assert_eq!(
            (after.image_count, after.total_bytes, after.version),
            (1, 200, 3)
        );
        assert!(
            repo.delete_image(id, &first, now)
                .await
                .expect("again")
                .is_none()
        );
        let AddImagesOutcome::Added { images, .. } = repo
            .add_images(id, vec![new_image(10, None)], now)
            .await
            .expect("add")
        else {
            panic!("fits again");
        };
        assert_eq!(images[0].position, 3);

        // Closed sessions take nothing.
        repo.complete(id, now).await.expect("complete");
        let closed = repo
            .add_images(id, vec![new_image(1, None)], now)
            .await
            .expect("closed");
        assert!(matches!(closed, AddImagesOutcome::Closed));
        let missing = repo
            .add_images("nope", vec![new_image(1, None)], now)
            .await
            .expect("missing");
        assert!(matches!(missing, AddImagesOutcome::NotFound));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_uploads_cannot_overrun_the_quota() {
    for t in databases().await {
        let repo = Arc::new(repo(&t.db));
        let s = create_session(&repo, 5, 1_000_000, Duration::minutes(5)).await;
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let repo = repo.clone();
                let id = s.identifier.clone();
                tokio::spawn(async move {
                    repo.add_images(&id, vec![new_image(10, None)], Utc::now())
                        .await
                })
            })
            .collect();
        let mut added = 0;
        for task in tasks {
            if let Ok(Ok(AddImagesOutcome::Added { .. })) = task.await {
                added += 1;
            }
        }
        assert_eq!(added, 5, "{}", t.name);
        let (session, images) = repo
            .snapshot(&s.identifier)
            .await
            .expect("snap")
            .expect("exists");
        assert_eq!(
            (session.image_count, images.len(), session.version),
            (5, 5, 6),
            "{}",
            t.name
        );
        let mut positions: Vec<u32> = images.iter().map(|i| i.position).collect();
        positions.dedup();
        assert_eq!(positions, vec![1, 2, 3, 4, 5], "{}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn expiry_and_retention() {
    for t in databases().await {
        let repo = repo(&t.db);
        let due = create_session(&repo, 3, 1000, Duration::seconds(-1)).await;
        let live = create_session(&repo, 3, 1000, Duration::minutes(5)).await;
        repo.add_images(&live.identifier, vec![new_image(1, None)], Utc::now())
            .await
            .expect("add");
        let changes = repo.expire_due(Utc::now()).await.expect("expire");
        assert!(
            changes
                .iter()
                .any(|c| c.identifier == due.identifier && c.version == 2),
            "{}",
            t.name
        );
        assert!(!changes.iter().any(|c| c.identifier == live.identifier));
        assert!(
            repo.expire_due(Utc::now())
                .await
                .expect("again")
                .iter()
                .all(|c| c.identifier != due.identifier)
        );

        let old = repo.retention_due(Utc::now(), 10).await.expect("retention");
        assert!(
            old.contains(&due.identifier) && !old.contains(&live.identifier),
            "{}",
            t.name
        );
        let images = repo.delete_session(&live.identifier).await.expect("delete");
        assert_eq!(images.len(), 1);
        assert!(
            repo.get_session(&live.identifier)
                .await
                .expect("get")
                .is_none()
        );
        assert!(!repo.image_exists(&images[0].id).await.expect("exists"));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn migrations_go_down_and_up_again() {
    for t in databases().await {
        assert!(
            migration_status(&t.db)
                .await
                .expect("status")
                .iter()
                .all(|(_, applied)| *applied)
        );
        migrate_down(&t.db, None).await.expect("down");
        assert!(
            migration_status(&t.db)
                .await
                .expect("status")
                .iter()
                .all(|(_, applied)| !applied)
        );
        migrate_up(&t.db).await.expect("up");
        repo(&t.db)
            .create_session(new_session(1, 1, Duration::minutes(1)))
            .await
            .expect("schema is back");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn instances_starting_together_do_not_race_the_migrations() {
    let Some((admin, name, url)) = fresh_postgres().await else {
        return;
    };
    // Four "instances" migrate one empty database at the same moment.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let db = connect(&url, 2).await.expect("connect");
                let result = migrate_up(&db).await;
                let _ = db.close().await;
                result
            })
        })
        .collect();
    for run in runs {
        run.await.expect("task").expect("every instance comes up");
    }
    let db = connect(&url, 2).await.expect("connect");
    assert!(
        migration_status(&db)
            .await
            .expect("status")
            .iter()
            .all(|(_, a)| *a)
    );
    let _ = db.close().await;
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

#[tokio::test]
async fn lost_connections_map_to_unavailable() {
    let e = db_err(sea_orm::DbErr::ConnectionAcquire(
        sea_orm::error::ConnAcquireErr::Timeout,
    ));
    assert!(matches!(e, crate::biz::BizError::Unavailable(_)));
    let e = db_err(sea_orm::DbErr::Custom("boom".into()));
    assert!(matches!(e, crate::biz::BizError::Internal(_)));
    assert_eq!(
        e.to_string(),
        "internal error",
        "no cause in the client's message"
    );
}

#[test]
fn a_server_going_away_is_unavailable_other_sqlstates_are_not() {
    for code in ["57P01", "57P02", "57P03", "08006", "08003"] {
        assert!(server_going_away(code), "{code}");
    }
    for code in ["23505", "40001", "57014", "42P01"] {
        assert!(!server_going_away(code), "{code}");
    }
}

/// Every change writes its events in its own transaction; a claimed row is leased, so a
/// second claim (another instance) gets nothing until the lease ends or the row is retried.
#[tokio::test]
async fn changes_write_webhook_events_to_the_outbox() {
    use crate::biz::{EventType, WebhookOutbox, WebhookRoutes};
    for t in databases().await {
        let routes = WebhookRoutes {
            endpoints: vec![
                ("https://a.example/hook".into(), None),
                (
                    "https://b.example/hook".into(),
                    Some(vec![EventType::SessionCompleted]),
                ),
            ],
        };
        let repo = repo(&t.db).with_webhooks(routes);
        let outbox = SqlWebhookOutbox::new(t.db.clone());
        let now = Utc::now();
        let s = create_session(&repo, 3, 1000, Duration::minutes(5)).await;
        repo.mark_scanned(&s.identifier).await.expect("scan");
        let img = new_image(10, None);
        let img_id = img.id.clone();
        repo.add_images(&s.identifier, vec![img, new_image(10, None)], now)
            .await
            .expect("add");
        repo.delete_image(&s.identifier, &img_id, now)
            .await
            .expect("delete");
        repo.complete(&s.identifier, now).await.expect("complete");
        // Completing again changes nothing, so it writes nothing.
        repo.complete(&s.identifier, now).await.expect("complete");

        let stats = outbox.stats().await.expect("stats");
        assert_eq!(stats.pending, 7, "{}: 6 for a, 1 for b", t.name);
        let later = Utc::now() + Duration::seconds(1);
        let lease = later + Duration::seconds(60);
        let claimed = outbox.claim(later, lease, 100).await.expect("claim");
        let kinds: Vec<_> = claimed
            .iter()
            .filter(|d| d.endpoint.starts_with("https://a."))
            .map(|d| d.event.kind.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "session.created",
                "session.scanned",
                "image.added",
                "image.added",
                "image.deleted",
                "session.completed"
            ],
            "{}",
            t.name
        );
        assert_eq!(claimed.len(), 7);
        let deleted = &claimed[4].event;
        assert_eq!(
            deleted.image.as_ref().map(|i| i.id.as_str()),
            Some(img_id.as_str())
        );
        assert!(
            outbox
                .claim(later, lease, 100)
                .await
                .expect("claim")
                .is_empty(),
            "{}: leased rows are not claimed twice",
            t.name
        );
        outbox.delivered(claimed[0].row).await.expect("delivered");
        outbox
            .retry_at(claimed[1].row, 1, later)
            .await
            .expect("retry");
        outbox.dead(claimed[2].row, 9).await.expect("dead");
        let again = outbox.claim(later, lease, 100).await.expect("claim");
        assert_eq!(again.len(), 1, "{}", t.name);
        assert_eq!((again[0].row, again[0].attempts), (claimed[1].row, 1));
        assert_eq!(outbox.stats().await.expect("stats").pending, 5);
        t.cleanup().await;
    }
}

/// A reorder gives positions 1..n in the new order, bumps the version once and writes one
/// `images.reordered` event with the ids; a list that is not exactly the session's changes
/// nothing.
#[tokio::test]
async fn reorder_sets_positions_with_one_version_and_one_event() {
    use crate::biz::{EventType, ReorderOutcome, WebhookOutbox, WebhookRoutes};
    for t in databases().await {
        let routes = WebhookRoutes {
            endpoints: vec![(
                "https://a.example/hook".into(),
                Some(vec![EventType::ImagesReordered]),
            )],
        };
        let repo = repo(&t.db).with_webhooks(routes);
        let outbox = SqlWebhookOutbox::new(t.db.clone());
        let now = Utc::now();
        let s = create_session(&repo, 5, 1000, Duration::minutes(5)).await;
        let imgs = vec![new_image(1, None), new_image(1, None), new_image(1, None)];
        let ids: Vec<String> = imgs.iter().map(|i| i.id.clone()).collect();
        let AddImagesOutcome::Added { session, .. } = repo
            .add_images(&s.identifier, imgs, now)
            .await
            .expect("add")
        else {
            panic!("{}: added", t.name);
        };
        let wanted = vec![ids[2].clone(), ids[0].clone(), ids[1].clone()];

        let short = repo
            .reorder_images(&s.identifier, &wanted[..2], now)
            .await
            .expect("reorder");
        assert!(matches!(short, ReorderOutcome::Mismatch), "{}", t.name);
        let ReorderOutcome::Reordered {
            session: after,
            images,
        } = repo
            .reorder_images(&s.identifier, &wanted, now)
            .await
            .expect("reorder")
        else {
            panic!("{}: reordered", t.name);
        };

        assert_eq!(after.version, session.version + 1, "{}", t.name);
        let got: Vec<(String, u32)> = images.into_iter().map(|i| (i.id, i.position)).collect();
        assert_eq!(
            got,
            vec![
                (wanted[0].clone(), 1),
                (wanted[1].clone(), 2),
                (wanted[2].clone(), 3)
            ],
            "{}",
            t.name
        );
        let later = Utc::now() + Duration::seconds(1);
        let claimed = outbox
            .claim(later, later + Duration::seconds(60), 100)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "{}", t.name);
        assert_eq!(claimed[0].event.kind, EventType::ImagesReordered);
        assert_eq!(claimed[0].event.image_ids.as_deref(), Some(&wanted[..]));
        assert_eq!(claimed[0].event.session.version, after.version);

        repo.complete(&s.identifier, now).await.expect("complete");
        let closed = repo
            .reorder_images(&s.identifier, &ids, now)
            .await
            .expect("reorder");
        assert!(matches!(closed, ReorderOutcome::Closed), "{}", t.name);
        let unknown = repo
            .reorder_images("nope", &ids, now)
            .await
            .expect("reorder");
        assert!(matches!(unknown, ReorderOutcome::NotFound), "{}", t.name);
        t.cleanup().await;
    }
}

/// A ticket is taken once: the second take (another attempt, on any instance) finds nothing;
/// expired tickets are purged when the next one is stored.
#[tokio::test]
async fn stream_tickets_are_taken_once_and_purged_when_expired() {
    use crate::biz::{NewStreamTicket, StreamTicketRepo};
    for t in databases().await {
        let sessions = repo(&t.db);
        let tickets = SqlStreamTicketRepo::new(t.db.clone());
        let s = create_session(&sessions, 3, 1000, Duration::minutes(5)).await;
        let now = Utc::now();
        let ticket = |hash: &str, expires: Duration| NewStreamTicket {
            ticket_hash: crate::biz::hash_token(hash),
            identifier: s.identifier.clone(),
            member_id: 42,
            member_expires_at: Some(now + Duration::minutes(1)),
            expires_at: now + expires,
            created_at: now,
        };
        let old = ticket("old", Duration::seconds(-1));
        let live = ticket("live", Duration::seconds(60));
        tickets
            .insert(old.clone(), now - Duration::seconds(2))
            .await
            .expect("insert old");
        tickets
            .insert(live.clone(), now)
            .await
            .expect("insert live");

        let taken = tickets.take(&live.ticket_hash).await.expect("take");
        assert_eq!(
            taken.map(|t| (t.member_id, t.identifier)),
            Some((42, s.identifier.clone())),
            "{}",
            t.name
        );
        assert!(
            tickets
                .take(&live.ticket_hash)
                .await
                .expect("take")
                .is_none(),
            "{}: once",
            t.name
        );
        assert!(
            tickets
                .take(&old.ticket_hash)
                .await
                .expect("take")
                .is_none(),
            "{}: the expired ticket was purged",
            t.name
        );
        t.cleanup().await;
    }
}

/// A session's later events wait while an earlier one backs off, so a receiver gets them in
/// order; other sessions are not held up, and a dead event no longer blocks.
#[tokio::test]
async fn a_backing_off_event_holds_back_its_sessions_later_events_only() {
    use crate::biz::{WebhookOutbox, WebhookRoutes};
    for t in databases().await {
        let routes = WebhookRoutes {
            endpoints: vec![("https://a.example/hook".into(), None)],
        };
        let repo = repo(&t.db).with_webhooks(routes);
        let outbox = SqlWebhookOutbox::new(t.db.clone());
        let s1 = create_session(&repo, 3, 1000, Duration::minutes(5)).await;
        let s2 = create_session(&repo, 4, 1000, Duration::minutes(5)).await;
        let later = Utc::now() + Duration::seconds(1);
        let lease = later + Duration::seconds(60);
        let first = outbox.claim(later, lease, 100).await.expect("claim");
        assert_eq!(first.len(), 2, "{}", t.name);
        let created_1 = first
            .iter()
            .find(|d| d.event.session.identifier == s1.identifier)
            .expect("s1 created");
        // s1's first event fails and backs off; then both sessions change again.
        outbox
            .retry_at(created_1.row, 1, later + Duration::seconds(30))
            .await
            .expect("retry");
        let s2_created = first
            .iter()
            .find(|d| d.event.session.identifier == s2.identifier)
            .expect("s2 created");
        outbox.delivered(s2_created.row).await.expect("delivered");
        repo.mark_scanned(&s1.identifier).await.expect("scan");
        repo.mark_scanned(&s2.identifier).await.expect("scan");

        let next = outbox.claim(later, lease, 100).await.expect("claim");
        let got: Vec<_> = next
            .iter()
            .map(|d| (d.event.session.identifier.as_str(), d.event.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            [(s2.identifier.as_str(), "session.scanned")],
            "{}: s1's scan waits behind its created",
            t.name
        );

        // Once the first is due again, both of s1's go, in order.
        let due = later + Duration::seconds(31);
        let both = outbox
            .claim(due, due + Duration::seconds(60), 100)
            .await
            .expect("claim");
        let kinds: Vec<_> = both.iter().map(|d| d.event.kind.as_str()).collect();
        assert_eq!(kinds, ["session.created", "session.scanned"], "{}", t.name);

        // A dead event holds nothing back.
        outbox.dead(both[0].row, 5).await.expect("dead");
        outbox.retry_at(both[1].row, 0, due).await.expect("release");
        let rest = outbox
            .claim(due, due + Duration::seconds(60), 100)
            .await
            .expect("claim");
        assert_eq!(rest.len(), 1, "{}", t.name);
        assert_eq!(rest[0].event.kind.as_str(), "session.scanned");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn tus_offsets_move_by_compare_and_set_and_sweeps_find_what_is_due() {
    use crate::biz::{TusRepo, TusUpload};
    for t in databases().await {
        let sessions = repo(&t.db);
        let tus = SqlTusRepo::new(t.db.clone());
        let session = sessions
            .create_session(new_session(5, 1000, Duration::minutes(10)))
            .await
            .expect("session");
        let now = Utc::now();
        let upload = TusUpload {
            id: crate::biz::new_id(),
            identifier: session.identifier.clone(),
            length: 10,
            offset: 0,
            parts: Vec::new(),
            metadata: Some("filename eA==".into()),
            image_id: None,
            created_at: now,
            expires_at: now + Duration::minutes(5),
        };
        tus.create(&upload).await.expect("create");
        assert!(tus.append(&upload, 4, &["a".into()]).await.expect("append"));
        // A second request that started at the same offset loses the race.
        assert!(
            !tus.append(&upload, 6, &["b".into()]).await.expect("append"),
            "{}",
            t.name
        );
        let stored = tus.get(&upload.id).await.expect("get").expect("row");
        assert_eq!(stored.offset, 4, "{}", t.name);
        assert_eq!(stored.parts, vec!["a".to_owned()], "{}", t.name);
        assert_eq!(stored.metadata.as_deref(), Some("filename eA=="));
        assert_eq!(
            tus.reserved(&session.identifier).await.expect("reserved"),
            (1, 10)
        );
        assert!(
            tus.due(now, 10).await.expect("due").is_empty(),
            "{}",
            t.name
        );
        assert_eq!(
            tus.due(now + Duration::minutes(6), 10)
                .await
                .expect("due")
                .len(),
            1,
            "{}: expired",
            t.name
        );
        assert!(tus.mark_finished(&upload.id, "img").await.expect("finish"));
        assert!(
            !tus.mark_finished(&upload.id, "img").await.expect("finish"),
            "{}: finished once",
            t.name
        );
        assert!(
            tus.due(now + Duration::minutes(6), 10)
                .await
                .expect("due")
                .is_empty(),
            "{}: a finished upload stays while its session is open",
            t.name
        );
        sessions
            .complete(&session.identifier, now)
            .await
            .expect("complete");
        assert_eq!(tus.due(now, 10).await.expect("due").len(), 1, "{}", t.name);
        assert!(tus.delete(&upload.id).await.expect("delete"));
        assert!(tus.get(&upload.id).await.expect("get").is_none());
        t.cleanup().await;
    }
}

/// Rows written before `source_content_type` existed read as what they were stored as.
#[tokio::test]
async fn images_from_before_the_source_type_column_take_their_content_type() {
    use migration::{Migrator, MigratorTrait};
    let db = connect("sqlite::memory:", 1).await.expect("sqlite");
    Migrator::up(&db, Some(2))
        .await
        .expect("the first two migrations");
    let (session, image) = (crate::biz::new_id(), crate::biz::new_id());
    db.execute_unprepared(&format!(
        "INSERT INTO upload_sessions (identifier, member_id, token_hash, status, max_images, \
         max_bytes, expires_at, created_at) VALUES ('{session}', 1, 'h', 'active', 3, 1000, \
         '2030-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    ))
    .await
    .expect("old session");
    db.execute_unprepared(&format!(
        "INSERT INTO images (id, identifier, position, content_type, width, height, size, \
         sha256, created_at) VALUES ('{image}', '{session}', 1, 'image/png', 4, 3, 10, 'ab', \
         '2026-01-01T00:00:00Z')"
    ))
    .await
    .expect("old image");
    Migrator::up(&db, None).await.expect("the rest");
    let images = repo(&db).list_images(&session).await.expect("list");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].content_type, "image/png");
    assert_eq!(images[0].source_content_type, "image/png");
    // The column itself is filled in, not only read around.
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT source_content_type FROM images WHERE id = '{image}'"),
        ))
        .await
        .expect("query")
        .expect("row");
    let stored: Option<String> = row.try_get("", "source_content_type").expect("column");
    assert_eq!(stored.as_deref(), Some("image/png"));
    let _ = db.close().await;
}
