//! The IDCloudHost client against the built-in simulator: every call (stop, start and charging
//! too), error bodies, 401, 404 on delete, retries after a 500, timeouts, and the API key kept out
//! of every message.

use std::time::Duration;

use crate::common::*;
use idch_autoscaler::config::Secret;
use idch_autoscaler::idch::client::{Deleted, RetryPolicy};
use idch_autoscaler::idch::{CloudClient, CloudError};
use idch_autoscaler::sim::{Faults, SimHandle, SimOptions};

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

fn billed(sim: &SimHandle, uuid: &str) -> (f64, f64) {
    let state = sim.state();
    let vm = state.vms.iter().find(|vm| vm.uuid == uuid).unwrap();
    (vm.billed_running_seconds, vm.billed_stopped_seconds)
}

async fn wait_status(client: &CloudClient, uuid: &str, status: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("the VM is {status}"),
        || async {
            client
                .get_vm(uuid)
                .await
                .ok()
                .filter(|vm| vm.status == status)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_go_through_the_states_and_billing_follows() {
    let start_delay = Duration::from_millis(800);
    let sim = TestSim::start(|subnet| SimOptions {
        start_delay: Some(start_delay),
        ..sim_options(subnet, Duration::from_millis(100))
    })
    .await;
    let client = client_for(&sim);
    let seed = sim.seed_uuid();

    let stopped = client.stop_vm(&seed).await.unwrap();
    assert_eq!(stopped.uuid, seed);
    assert_eq!(stopped.status, "stopped");
    assert!(!client.get_vm(&seed).await.unwrap().is_running());
    let (running, stopped_s) = billed(&sim, &seed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (running_later, stopped_later) = billed(&sim, &seed);
    assert_eq!(running_later, running, "a stopped VM bills no running time");
    assert!(
        stopped_later - stopped_s >= 0.5,
        "{stopped_s} -> {stopped_later}"
    );

    let asked = std::time::Instant::now();
    let started = client.start_vm(&seed).await.unwrap();
    let started = started.expect("the simulator answers a VM object");
    assert_eq!(started.uuid, seed);
    assert!(!started.is_running(), "a start is not running at once");
    wait_status(&client, &seed, "running").await;
    assert!(asked.elapsed() >= start_delay, "{:?}", asked.elapsed());
    let (running_after, stopped_after) = billed(&sim, &seed);
    assert!(
        running_after - running_later >= 0.7,
        "starting and running bill as running: {running_later} -> {running_after}"
    );
    assert!(
        stopped_after - stopped_later < 0.3,
        "{stopped_later} -> {stopped_after}"
    );

    // Stop and start are retried after a 500, like the reads (repeating them does no harm).
    let client = fast_retries(client, 3);
    sim.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    assert_eq!(client.stop_vm(&seed).await.unwrap().status, "stopped");
    sim.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    assert!(client.start_vm(&seed).await.unwrap().is_some());
    wait_status(&client, &seed, "running").await;
    let state = sim.state();
    assert_eq!(state.calls["vm_stop"], 3);
    assert_eq!(state.calls["vm_start"], 3);

    // An unknown VM is a NotFound, for stop and start alike.
    let err = client.stop_vm("no-such-vm").await.unwrap_err();
    assert!(matches!(err, CloudError::NotFound { .. }), "{err:?}");
    let err = client.start_vm("no-such-vm").await.unwrap_err();
    assert!(matches!(err, CloudError::NotFound { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charging_usage_rows_are_read_per_vm() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let client = client_for(&sim);
    let seed = sim.seed_uuid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.stop_vm(&seed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rows = client
        .charging_usage(sim.billing_account_id())
        .await
        .unwrap();
    let mine: Vec<_> = rows.iter().filter(|r| r.owner_uuid == seed).collect();
    assert_eq!(mine.len(), 2, "a running and a stopped row: {rows:?}");
    let (running, stopped) = billed(&sim, &seed);
    let running_row = mine.iter().find(|r| r.price == 0.02882).unwrap();
    let stopped_row = mine.iter().find(|r| r.price == 0.0028).unwrap();
    assert_eq!(running_row.price_unit, "h");
    assert!((running_row.hours * 3600.0 - running).abs() < 1.0);
    assert!((stopped_row.hours * 3600.0 - stopped).abs() < 1.0);
    assert!(stopped_row.description.ends_with(", stopped"));
    let cost: f64 = mine.iter().map(|r| r.cost).sum();
    assert!(cost > 0.0);
    assert_eq!(running_row.configurations[0].vm_name, "calculate-service");
    assert_eq!(running_row.configurations[0].cpus, Some(2));

    assert!(client.charging_usage(1).await.unwrap().is_empty());
    sim.shutdown().await;
}
