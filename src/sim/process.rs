//! The workload processes of simulated VMs: start, kill, and notice when one exits by itself.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::Shared;

/// Starts `{program} calculate --listen {ip}:{port} --name {name} --version-file {file}`. The child is killed when its
/// `Child` is dropped, and by the kernel when the thread that spawned it (a runtime worker) or the
/// whole simulator dies, so a killed simulator leaves no orphan. A spawn error is logged; the VM then
/// simply runs nothing, like a VM whose app failed to start.
pub(super) fn spawn_workload(
    program: &Path,
    ip: Ipv4Addr,
    port: u16,
    name: &str,
    version_file: &Path,
) -> Option<Child> {
    let mut command = Command::new(program);
    command
        .arg("calculate")
        .arg("--listen")
        .arg(format!("{ip}:{port}"))
        .arg("--name")
        .arg(name)
        .arg("--version-file")
        .arg(version_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The simulator may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    match command.spawn() {
        Ok(child) => {
            tracing::debug!(vm = name, %ip, port, pid = child.id(), "workload started");
            Some(child)
        }
        Err(err) => {
            tracing::warn!(
                vm = name,
                program = %program.display(),
                %err,
                "cannot start the simulated VM's workload"
            );
            None
        }
    }
}

/// Kills the process and waits until it is gone (reaped).
pub(super) async fn kill(mut child: Child, vm: &str) {
    if let Err(err) = child.kill().await {
        tracing::warn!(vm, %err, "cannot kill the simulated VM's workload");
    }
}

/// Sends SIGKILL without waiting (for use where nothing may await); tokio reaps it later.
pub(super) fn kill_now(mut child: Child) {
    if let Err(err) = child.start_kill() {
        tracing::debug!(%err, "workload already gone");
    }
}

/// Reaps workloads that exit by themselves, so the state shows it and no zombie lingers.
pub(super) async fn monitor(sim: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sim.world().reap_exited();
    }
}
