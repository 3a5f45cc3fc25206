//! The executor: every cloud step runs as its own task, at most one per VM at a time, and its
//! result comes back to the pool's loop as an [`Event`]. The loop itself never awaits a cloud
//! call, so probes keep their interval and drains leave Traefik within one publish whatever the
//! cloud does.
//!
//! A step whose intent must be durable before the call (a clone's name, a delete) is given the
//! store writer's receiver for that write and awaits it before calling.

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, oneshot};

use crate::idch::client::Deleted;
use crate::idch::{CloudClient, CloudError, Vm};

/// A cloud step's result, or a probe round's.
#[derive(Debug)]
pub enum Event {
    Cloned {
        name: String,
        result: Result<Vm, CloudError>,
    },
    Deleted {
        uuid: String,
        name: String,
        result: Result<Deleted, CloudError>,
    },
    /// A warm clone's start call answered (the VM object, when the answer is one).
    Started {
        uuid: String,
        name: String,
        result: Result<Option<Vm>, CloudError>,
    },
    /// A stop call answered.
    Stopped {
        uuid: String,
        name: String,
        result: Result<Vm, CloudError>,
    },
    /// The public addresses released, or why not.
    IpsReleased {
        uuid: String,
        name: String,
        result: Result<Vec<String>, CloudError>,
    },
    /// A booting VM fetched on its own (to see its address and status before the next list).
    Fetched {
        uuid: String,
        result: Result<Vm, CloudError>,
    },
    /// A probe round: `(uuid, healthy)` per target; `full` rounds count towards the first sync.
    Probed {
        results: Vec<(String, bool)>,
        full: bool,
    },
    /// A round of version reads (drift detection): `(uuid, version)` per backend read.
    Versions {
        results: Vec<(String, Option<String>)>,
    },
    /// The intent write a step waited for failed: the step was not taken.
    NotDurable { key: String, error: String },
}

pub struct Executor {
    cloud: CloudClient,
    events: mpsc::UnboundedSender<Event>,
    /// Keys (uuid, or a clone call's name) with a step in flight. Written by `spawn_*` and
    /// [`Executor::finished`], both on the pool's loop; read by the planner through it.
    busy: HashSet<String>,
    /// Booting VMs being fetched (a read; kept apart from `busy` so it never delays a step).
    fetching: HashSet<String>,
    /// What each key in `busy` is doing: the call and the VM's name (for the plan endpoint).
    calls: HashMap<String, (&'static str, String)>,
}

impl Executor {
    pub fn new(cloud: CloudClient, events: mpsc::UnboundedSender<Event>) -> Executor {
        Executor {
            cloud,
            events,
            busy: HashSet::new(),
            fetching: HashSet::new(),
            calls: HashMap::new(),
        }
    }

    pub fn busy(&self) -> &HashSet<String> {
        &self.busy
    }

    /// Where probe rounds (run by the loop as tasks of their own) send their results.
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }

    /// Called by the loop when a step's event arrives.
    pub fn finished(&mut self, event: &Event) {
        match event {
            Event::Cloned { name, .. } => {
                self.busy.remove(name);
                self.calls.remove(name);
            }
            Event::Deleted { uuid, .. }
            | Event::IpsReleased { uuid, .. }
            | Event::Started { uuid, .. }
            | Event::Stopped { uuid, .. } => {
                self.busy.remove(uuid);
                self.calls.remove(uuid);
            }
            Event::Fetched { uuid, .. } => {
                self.fetching.remove(uuid);
            }
            Event::NotDurable { key, .. } => {
                self.busy.remove(key);
                self.calls.remove(key);
            }
            Event::Probed { .. } | Event::Versions { .. } => {}
        }
    }

    /// Clones `seed` as `name` once `durable` says its intent is on disk.
    pub fn clone_vm(
        &mut self,
        seed: String,
        name: String,
        durable: oneshot::Receiver<anyhow::Result<()>>,
    ) {
        self.busy.insert(name.clone());
        self.calls.insert(name.clone(), ("clone", name.clone()));
        let (cloud, events) = (self.cloud.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Err(error) = wait(durable).await {
                let _ = events.send(Event::NotDurable { key: name, error });
                return;
            }
            let result = cloud.clone_vm(&seed, &name).await;
            let _ = events.send(Event::Cloned { name, result });
        });
    }

    /// Deletes the VM once `durable` says its deleting intent is on disk.
    pub fn delete(
        &mut self,
        uuid: String,
        name: String,
        durable: oneshot::Receiver<anyhow::Result<()>>,
    ) {
        self.busy.insert(uuid.clone());
        self.calls.insert(uuid.clone(), ("delete", name.clone()));
        let (cloud, events) = (self.cloud.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Err(error) = wait(durable).await {
                let _ = events.send(Event::NotDurable { key: uuid, error });
                return;
            }
            let result = cloud.delete_vm(&uuid).await;
            let _ = events.send(Event::Deleted { uuid, name, result });
        });
    }

    /// Starts a warm clone once `durable` says its starting intent is on disk.
    pub fn start(
        &mut self,
        uuid: String,
        name: String,
        durable: oneshot::Receiver<anyhow::Result<()>>,
    ) {
        self.busy.insert(uuid.clone());
        self.calls.insert(uuid.clone(), ("start", name.clone()));
        let (cloud, events) = (self.cloud.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Err(error) = wait(durable).await {
                let _ = events.send(Event::NotDurable { key: uuid, error });
                return;
            }
            let result = cloud.start_vm(&uuid).await;
            let _ = events.send(Event::Started { uuid, name, result });
        });
    }

    /// Stops a clone into the warm pool once `durable` says its intent is on disk.
    pub fn stop(
        &mut self,
        uuid: String,
        name: String,
        durable: oneshot::Receiver<anyhow::Result<()>>,
    ) {
        self.busy.insert(uuid.clone());
        self.calls.insert(uuid.clone(), ("stop", name.clone()));
        let (cloud, events) = (self.cloud.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Err(error) = wait(durable).await {
                let _ = events.send(Event::NotDurable { key: uuid, error });
                return;
            }
            let result = cloud.stop_vm(&uuid).await;
            let _ = events.send(Event::Stopped { uuid, name, result });
        });
    }

    /// Releases every public IP assigned to the VM.
    pub fn release_ips(&mut self, uuid: String, name: String) {
        self.busy.insert(uuid.clone());
        self.calls
            .insert(uuid.clone(), ("release_ip", name.clone()));
        let (cloud, events) = (self.cloud.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = release(&cloud, &uuid).await;
            let _ = events.send(Event::IpsReleased { uuid, name, result });
        });
    }

    /// The steps in flight as (key, call, VM name), in key order.
    pub fn in_flight(&self) -> Vec<(&str, &'static str, &str)> {
        let mut calls: Vec<_> = self
            .calls
            .iter()
            .map(|(key, (call, vm))| (key.as_str(), *call, vm.as_str()))
            .collect();
        calls.sort();
        calls
    }

    /// Booting VMs being fetched now.
    pub fn fetching(&self) -> usize {
        self.fetching.len()
    }

    /// Fetches one VM (a booting clone's address and status), unless a fetch of it is in
    /// flight; true when a fetch started.
    pub fn fetch(&mut self, uuid: &str) -> bool {
        if !self.fetching.insert(uuid.to_string()) {
            return false;
        }
        let (cloud, events, uuid) = (self.cloud.clone(), self.events.clone(), uuid.to_string());
        tokio::spawn(async move {
            let result = cloud.get_vm(&uuid).await;
            let _ = events.send(Event::Fetched { uuid, result });
        });
        true
    }
}

async fn wait(durable: oneshot::Receiver<anyhow::Result<()>>) -> Result<(), String> {
    match durable.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the store writer stopped".into()),
    }
}

async fn release(cloud: &CloudClient, uuid: &str) -> Result<Vec<String>, CloudError> {
    let ips = cloud.list_floating_ips(Some(uuid)).await?;
    let mut released = Vec::new();
    for ip in ips
        .iter()
        .filter(|ip| ip.assigned_to.as_deref() == Some(uuid))
    {
        cloud.delete_floating_ip(&ip.address).await?;
        released.push(ip.address.clone());
    }
    Ok(released)
}
