//! Doorbells by session. Over NATS as over Redis (one server, or a cluster of three nodes on
//! sharded pub/sub), a watcher on one instance sees uploads made through another and converges
//! after the broker goes away and comes back; a session first watched during the outage is
//! subscribed on reconnect; and with three instances, each receives the doorbells of the
//! sessions it serves and no others. On the cluster, each session's channel is held by one
//! node only: the one that owns its slot.

use std::time::Duration;

use qrupload::conf::BusKind;

use crate::helpers::{
    Cluster, SseClient, TestApp,
    backends::{OwnBroker, bus, nats_url, redis_url},
    jpeg,
};

const DOORBELLS: &str = "qrupload_bus_changes_received_total";

#[tokio::test]
async fn a_watcher_on_one_instance_sees_uploads_through_another_over_nats() {
    let Some(nats) = nats_url().await else { return };
    let cluster = Cluster::start(2, |c| c.data.bus = bus(BusKind::Nats, &nats)).await;
    let (a, b) = (&cluster[0], &cluster[1]);

    let (session, token) = a.create_session(3).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(a, id, 3).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    for n in 1..=2 {
        let res = b
            .upload(id, &token, vec![("a.jpg", jpeg(20 + n, 20))], None)
            .await;
        assert_eq!(res.status(), 201);
        watcher
            .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == n as usize))
            .await;
    }
}

#[tokio::test]
async fn nats_watchers_converge_after_the_server_comes_back() {
    watchers_converge_after_the_broker_comes_back(BusKind::Nats).await;
}

/// Two instances on a broker of the test's own: while it is away uploads still succeed and
/// readiness says the bus is down; once it is back, the instance resubscribes, re-reads what
/// its watchers follow, and they converge on the latest version.
pub(crate) async fn watchers_converge_after_the_broker_comes_back(kind: BusKind) {
    let Some(mut broker) = OwnBroker::start(kind) else {
        return;
    };
    let cluster = Cluster::start(2, |c| c.data.bus = broker.bus()).await;
    let (a, b) = (&cluster[0], &cluster[1]);

    let (session, token) = a.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(a, id, 1).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;

    // The broker goes away: uploads still succeed, readiness says the bus is down.
    broker.stop();
    a.wait_ready(false).await;
    for n in 0..2 {
        let res = b
            .upload(id, &token, vec![("x.jpg", jpeg(10 + n, 10))], None)
            .await;
        assert_eq!(res.status(), 201, "uploads do not depend on the bus");
    }
    // The broker is back: A resubscribes, re-reads what its watchers follow, and they converge.
    broker.restart();
    a.wait_ready(true).await;
    let (event, list) = watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(
        event.id.as_deref(),
        Some("3"),
        "the latest version, nothing lost"
    );
    assert_eq!(list.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn redis_cluster_watchers_converge_after_the_nodes_come_back() {
    watchers_converge_after_the_broker_comes_back(BusKind::RedisCluster).await;
}

#[tokio::test]
async fn redis_cluster_a_session_first_watched_while_the_nodes_are_away_rings_once_they_are_back() {
    first_watched_while_away(BusKind::RedisCluster).await;
}

#[tokio::test]
async fn redis_cluster_instances_receive_only_the_doorbells_of_the_sessions_they_serve() {
    let Some(cluster) = OwnBroker::start(BusKind::RedisCluster) else {
        return;
    };
    doorbells_follow_the_watchers(BusKind::RedisCluster, &cluster.url()).await;
}

/// Twelve watched sessions: each channel is subscribed on exactly one node (a node refuses
/// `SSUBSCRIBE` for a slot it does not own), the channels spread over the nodes, no classic
/// subscription exists anywhere, and once the watchers leave no node holds any channel.
#[tokio::test]
async fn redis_cluster_channels_live_on_their_slots_node_only() {
    let Some(nodes) = OwnBroker::start(BusKind::RedisCluster) else {
        return;
    };
    let apps = Cluster::start(1, |c| c.data.bus = nodes.bus()).await;
    let app = &apps[0];
    let mut channels = Vec::new();
    let mut watchers = Vec::new();
    for member in 1..=12 {
        let (session, _) = app.create_session(member).await;
        let id = session["identifier"].as_str().expect("identifier");
        let mut watcher = SseClient::watch(app, id, member).await;
        watcher
            .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
            .await;
        channels.push(format!("qrupload:session:{id}"));
        watchers.push(watcher);
    }

    let held = shard_channels(&nodes).await;
    let mut all: Vec<&String> = held.iter().flatten().collect();
    all.sort();
    let mut expected: Vec<&String> = channels.iter().collect();
    expected.sort();
    assert_eq!(all, expected, "every channel once, on one node");
    assert!(
        held.iter().filter(|h| !h.is_empty()).count() >= 2,
        "the channels spread over the nodes: {held:?}"
    );
    for port in nodes.ports() {
        let mut conn = node(port).await;
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut conn)
            .await
            .expect("pubsub channels");
        assert!(classic.is_empty(), "no classic subscription: {classic:?}");
    }

    drop(watchers);
    for _ in 0..200 {
        if shard_channels(&nodes).await.iter().all(Vec::is_empty) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the last watcher leaving unsubscribes: {:?}",
        shard_channels(&nodes).await
    );
}

/// The cluster moves a watched session's slot to another node: the old node drops the
/// channel's subscribers, the instance subscribes again on the new owner, and the next upload
/// still rings the watcher.
#[tokio::test]
async fn redis_cluster_a_session_whose_slot_moves_keeps_ringing() {
    let Some(nodes) = OwnBroker::start(BusKind::RedisCluster) else {
        return;
    };
    let apps = Cluster::start(2, |c| c.data.bus = nodes.bus()).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (session, token) = a.create_session(1).await;
    let id = session["identifier"].as_str().expect("identifier");
    let channel = format!("qrupload:session:{id}");
    let mut watcher = SseClient::watch(a, id, 1).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;

    let ports = nodes.ports();
    let held = shard_channels(&nodes).await;
    let from = held
        .iter()
        .position(|h| h.contains(&channel))
        .expect("the channel is held by a node");
    let to = (from + 1) % ports.len();
    let mut source = node(ports[from]).await;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&channel)
        .query_async(&mut source)
        .await
        .expect("keyslot");
    let target_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut node(ports[to]).await)
        .await
        .expect("myid");
    // The slot holds no keys, so moving it is assigning it: to the target first, then the rest.
    for port in std::iter::once(ports[to]).chain(ports.iter().copied().filter(|p| *p != ports[to]))
    {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&target_id)
            .query_async(&mut node(port).await)
            .await
            .expect("setslot node");
    }

    // The instance resubscribes on the new owner.
    let mut moved = false;
    for _ in 0..200 {
        let held = shard_channels(&nodes).await;
        if held[to].contains(&channel) && !held[from].contains(&channel) {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        moved,
        "the channel follows its slot: {:?}",
        shard_channels(&nodes).await
    );
    let res = b
        .upload(id, &token, vec![("a.jpg", jpeg(14, 14))], None)
        .await;
    assert_eq!(res.status(), 201);
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
}

async fn node(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .expect("node url")
        .get_multiplexed_async_connection()
        .await
        .expect("node connection")
}

/// The sharded channels each node holds subscribers for.
async fn shard_channels(nodes: &OwnBroker) -> Vec<Vec<String>> {
    let mut held = Vec::new();
    for port in nodes.ports() {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .query_async(&mut node(port).await)
            .await
            .expect("pubsub shardchannels");
        held.push(channels);
    }
    held
}

#[tokio::test]
async fn redis_a_session_first_watched_while_the_bus_is_away_rings_once_it_is_back() {
    first_watched_while_away(BusKind::Redis).await;
}

#[tokio::test]
async fn nats_a_session_first_watched_while_the_bus_is_away_rings_once_it_is_back() {
    first_watched_while_away(BusKind::Nats).await;
}

/// The subscription asked for during an outage is made on reconnect: after the resync, the
/// next change still rings (a resync alone would leave the watcher at the first image).
async fn first_watched_while_away(kind: BusKind) {
    let Some(mut broker) = OwnBroker::start(kind) else {
        return;
    };
    let cluster = Cluster::start(2, |c| c.data.bus = broker.bus()).await;
    let (a, b) = (&cluster[0], &cluster[1]);

    broker.stop();
    a.wait_ready(false).await;
    let (session, token) = a.create_session(5).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut watcher = SseClient::watch(a, id, 5).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    let res = b
        .upload(id, &token, vec![("a.jpg", jpeg(12, 12))], None)
        .await;
    assert_eq!(res.status(), 201);

    broker.restart();
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let res = b
        .upload(id, &token, vec![("b.jpg", jpeg(13, 12))], None)
        .await;
    assert_eq!(res.status(), 201);
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 2))
        .await;
    broker.stop();
}

#[tokio::test]
async fn redis_instances_receive_only_the_doorbells_of_the_sessions_they_serve() {
    let Some(url) = redis_url().await else { return };
    doorbells_follow_the_watchers(BusKind::Redis, &url).await;
}

#[tokio::test]
async fn nats_instances_receive_only_the_doorbells_of_the_sessions_they_serve() {
    let Some(url) = nats_url().await else { return };
    doorbells_follow_the_watchers(BusKind::Nats, &url).await;
}

struct Session {
    id: String,
    token: String,
}

/// Three instances: A watches s1, B watches s2, C watches s1 and s3, nobody watches s4.
/// Uploads go through every instance; each instance's doorbell count must be the number of
/// changes of the sessions it watches, while the bus carries the changes of all four.
async fn doorbells_follow_the_watchers(kind: BusKind, url: &str) {
    let apps = Cluster::start(3, |c| c.data.bus = bus(kind, url)).await;
    let (a, b, c) = (&apps[0], &apps[1], &apps[2]);
    let mut sessions = Vec::new();
    for member in 1..=4 {
        let (session, token) = a.create_session(member).await;
        sessions.push(Session {
            id: session["identifier"]
                .as_str()
                .expect("identifier")
                .to_owned(),
            token,
        });
    }
    let watches: [(&TestApp, usize); 4] = [(a, 0), (b, 1), (c, 0), (c, 2)];
    let mut watchers = Vec::new();
    for (app, s) in watches {
        let mut w = SseClient::watch(app, &sessions[s].id, s as u32 + 1).await;
        let (first, _) = w
            .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
            .await;
        watchers.push((w, version(&first)));
    }
    let before = [
        a.metric(DOORBELLS).await,
        b.metric(DOORBELLS).await,
        c.metric(DOORBELLS).await,
    ];

    // Act: the unwatched session first, then the watched ones, each through another instance.
    let plan: [(usize, &TestApp, u32); 7] = [
        (3, a, 2),
        (3, b, 1),
        (0, b, 2),
        (0, c, 1),
        (1, c, 1),
        (2, a, 1),
        (2, b, 1),
    ];
    let mut uploads = [0u32; 4];
    for (s, app, n) in plan {
        for _ in 0..n {
            uploads[s] += 1;
            let res = app
                .upload(
                    &sessions[s].id,
                    &sessions[s].token,
                    vec![("p.jpg", jpeg(16 + uploads[s], 16))],
                    None,
                )
                .await;
            assert_eq!(res.status(), 201);
        }
    }
    // Every watcher reaches its session's last image: the doorbells have come.
    let mut changes = [0u64; 4];
    for ((_, s), (w, at_watch)) in watches.iter().zip(watchers.iter_mut()) {
        let n = uploads[*s] as usize;
        let (event, _) = w
            .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == n))
            .await;
        changes[*s] = version(&event) - *at_watch;
    }
    assert_eq!(changes[0], u64::from(uploads[0]), "one change per upload");

    // Assert: a doorbell per change of a watched session, none for the others.
    let expected = [changes[0], changes[1], changes[0] + changes[2]];
    for ((app, before), expected) in apps.iter().zip(before).zip(expected) {
        let received = settle(app, before + expected as f64).await - before;
        assert_eq!(
            received, expected as f64,
            "{kind:?}: doorbells of the sessions this instance serves, and no others"
        );
    }
}

fn version(event: &crate::helpers::Event) -> u64 {
    event
        .id
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("a snapshot's id is its version")
}

/// The doorbell count once it reaches `at_least` (the counter runs just ahead of or just
/// behind a watcher's snapshot), then after one more round trip through the bus: a fresh
/// session's first watcher waits for its subscription to be confirmed, which comes after
/// every doorbell already on the way to this instance.
async fn settle(app: &TestApp, at_least: f64) -> f64 {
    for _ in 0..200 {
        if app.metric(DOORBELLS).await >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (session, _) = app.create_session(99).await;
    let id = session["identifier"].as_str().expect("identifier");
    let mut barrier = SseClient::watch(app, id, 99).await;
    barrier
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    app.metric(DOORBELLS).await
}
