//! One contract, every bus: a session rings on this instance only while an interest in it is
//! held. In process always; Redis and NATS at their test URLs — required when
//! `QRUPLOAD_TEST_REDIS_URL` / `QRUPLOAD_TEST_NATS_URL` is set, else tried at the local default
//! and skipped when absent.

use std::time::Duration;

use futures::StreamExt;

use super::{MemoryBus, NatsBus, RedisBus};
use crate::biz::{BusMessage, BusSubscription, EventBus, SessionChange, new_id};

fn change(identifier: &str, version: u64) -> SessionChange {
    SessionChange {
        identifier: identifier.to_owned(),
        version,
    }
}

/// The next doorbell, past any resync (a connect announces one).
async fn next_change(messages: &mut BusSubscription) -> SessionChange {
    let wait = async {
        loop {
            match messages.next().await {
                Some(BusMessage::Change(c)) => return c,
                Some(BusMessage::Resync | BusMessage::Progress(_)) => continue,
                None => panic!("the bus ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a doorbell within the safety timeout")
}

async fn contract(bus: &dyn EventBus, name: &str) {
    let mut messages = bus.subscribe();
    for _ in 0..100 {
        if bus.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bus.is_connected(), "{name}: connects");
    let (s, t) = (new_id(), new_id());

    // Nobody here watches s: its doorbell does not come; t's, published after it, does.
    let t_interest = bus.interest(&t).await;
    bus.publish(change(&s, 1)).await.expect("publish");
    bus.publish(change(&t, 1)).await.expect("publish");
    assert_eq!(next_change(&mut messages).await, change(&t, 1), "{name}");

    // Two interests in s (a feed replaced while the old one drops): one leaving keeps it.
    let first = bus.interest(&s).await;
    let second = bus.interest(&s).await;
    drop(first);
    bus.publish(change(&s, 2)).await.expect("publish");
    assert_eq!(next_change(&mut messages).await, change(&s, 2), "{name}");

    // The last one leaving unsubscribes: a later interest is confirmed after it.
    drop(second);
    drop(t_interest);
    let _t_again = bus.interest(&t).await;
    bus.publish(change(&s, 3)).await.expect("publish");
    bus.publish(change(&t, 2)).await.expect("publish");
    assert_eq!(next_change(&mut messages).await, change(&t, 2), "{name}");
}

fn url(var: &str, default: &str) -> (String, bool) {
    match std::env::var(var) {
        Ok(url) => (url, true),
        Err(_) => (default.to_owned(), false),
    }
}

#[tokio::test]
async fn in_process_bus_rings_only_watched_sessions() {
    contract(&MemoryBus::new(), "memory").await;
}

#[tokio::test]
async fn redis_bus_rings_only_watched_sessions() {
    let (url, required) = url("QRUPLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
        Err(_) => false,
    };
    if !reachable {
        assert!(
            !required,
            "QRUPLOAD_TEST_REDIS_URL={url} is set but Redis is unreachable"
        );
        eprintln!("skipping: Redis unreachable");
        return;
    }
    let bus = RedisBus::start(&url).expect("redis bus");
    contract(&bus, "redis").await;
}

#[tokio::test]
async fn nats_bus_rings_only_watched_sessions() {
    let (url, required) = url("QRUPLOAD_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let reachable = match async_nats::connect(url.as_str()).await {
        Ok(client) => client.flush().await.is_ok(),
        Err(_) => false,
    };
    if !reachable {
        assert!(
            !required,
            "QRUPLOAD_TEST_NATS_URL={url} is set but NATS is unreachable"
        );
        eprintln!("skipping: NATS unreachable");
        return;
    }
    let bus = NatsBus::start(&url).await.expect("nats bus");
    contract(&bus, "nats").await;
}

#[tokio::test]
async fn a_redis_cluster_bus_refuses_urls_that_name_no_node() {
    for urls in [
        "",
        " , ",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:6379,nonsense",
    ] {
        assert!(
            RedisBus::start_cluster(urls).is_err(),
            "{urls:?} names no cluster node"
        );
    }
}
