//! The IDCloudHost client against the built-in simulator: every call, error bodies, 401, 404 on
//! delete, retries after a 500, timeouts, and the API key kept out of every message.

use std::time::Duration;

use crate::common::*;
use idch_autoscaler::config::Secret;
use idch_autoscaler::idch::client::{Deleted, RetryPolicy};
use idch_autoscaler::idch::{CloudClient, CloudError};
use idch_autoscaler::sim::Faults;

fn fast_retries(client: CloudClient, attempts: u32) -> CloudClient {
    client.with_retry(RetryPolicy {
        max_attempts: attempts,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    })
}

#[tokio::test]
async fn every_call_against_the_simulator() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let client = client_for(&sim);

    let vms = client.list_vms().await.unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].uuid, sim.seed_uuid());
    assert!(vms[0].is_running());
    assert_eq!(
        vms[0].private_ipv4.as_deref(),
        Some(sim.seed_ip().to_string().as_str())
    );

    let clone = client
        .clone_vm(&sim.seed_uuid(), "calculate-service-clone-1")
        .await
        .unwrap();
    assert_eq!(clone.name, "calculate-service-clone-1");
    assert!(!clone.is_running(), "a fresh clone is not running yet");
    let got = client.get_vm(&clone.uuid).await.unwrap();
    assert_eq!(got.uuid, clone.uuid);
    let running = eventually(Duration::from_secs(10), "clone running", || {
        let c = client.clone();
        let uuid = clone.uuid.clone();
        async move {
            c.get_vm(&uuid)
                .await
                .ok()
                .filter(|v| v.is_running() && v.private_ipv4.is_some())
        }
    })
    .await;
    assert_ne!(running.private_ipv4, vms[0].private_ipv4);

    let ips = client.list_floating_ips(Some(&clone.uuid)).await.unwrap();
    assert_eq!(ips.len(), 1, "a clone gets a public IP");
    assert_eq!(ips[0].assigned_to.as_deref(), Some(clone.uuid.as_str()));
    assert_eq!(
        client.delete_floating_ip(&ips[0].address).await.unwrap(),
        Deleted::Now
    );
    assert!(client
        .list_floating_ips(Some(&clone.uuid))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        client.delete_floating_ip(&ips[0].address).await.unwrap(),
        Deleted::AlreadyGone
    );

    assert_eq!(client.delete_vm(&clone.uuid).await.unwrap(), Deleted::Now);
    assert_eq!(
        client.delete_vm(&clone.uuid).await.unwrap(),
        Deleted::AlreadyGone,
        "404 on delete = gone"
    );
    assert_eq!(client.list_vms().await.unwrap().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn error_bodies_become_typed_errors() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let client = client_for(&sim);
    match client.get_vm("no-such-uuid").await {
        Err(CloudError::NotFound { message, .. }) => {
            assert!(
                message.contains("no-such-uuid"),
                "the API's message is kept: {message}"
            )
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = client
        .clone_vm("no-such-uuid", "calculate-service-clone-1")
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotFound { .. }), "{err:?}");
    assert!(!err.is_transient());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_is_a_loud_configuration_error_without_the_key() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let config = config_for(&sim, "", "");
    let secret = "wrong-key-SHOULD-NOT-LEAK";
    let client = fast_retries(
        CloudClient::new(&config.cloud, Secret::new(secret)).unwrap(),
        3,
    );
    let err = client.list_vms().await.unwrap_err();
    assert!(err.is_config_error(), "{err:?}");
    assert!(!err.is_transient(), "a 401 is not retried");
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(
        state["unauthorized"].as_u64(),
        Some(1),
        "one attempt, no retry"
    );
    let printed = format!("{err} {err:?} {client:?}");
    assert!(!printed.contains(secret), "the API key leaked: {printed}");
    assert!(printed.contains("401"), "{printed}");
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_errors_are_retried_and_clone_is_not() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let client = fast_retries(client_for(&sim), 3);
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let err = client.list_vms().await.unwrap_err();
    assert!(
        matches!(err, CloudError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(
        state["injected_errors"].as_u64(),
        Some(3),
        "three attempts of an idempotent call"
    );

    let err = client
        .clone_vm(&sim.seed_uuid(), "calculate-service-clone-1")
        .await
        .unwrap_err();
    assert!(err.outcome_unknown());
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(
        state["injected_errors"].as_u64(),
        Some(4),
        "a clone is tried exactly once"
    );

    // A 500 then success: the call succeeds.
    sim.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    let vms = client.list_vms().await.expect("the retry succeeds");
    assert_eq!(vms.len(), 1);
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(state["injected_errors"].as_u64(), Some(5));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_call_that_hangs_times_out() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let mut config = config_for(&sim, "", "");
    config.cloud.timeout = Duration::from_millis(300);
    let client = fast_retries(
        CloudClient::new(&config.cloud, Secret::new(API_KEY)).unwrap(),
        2,
    );
    sim.set_faults(Faults {
        latency: Duration::from_secs(3),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let err = client.list_vms().await.unwrap_err();
    assert!(matches!(err, CloudError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "two attempts of 300 ms, not the 3 s latency"
    );
    sim.shutdown().await;
}
