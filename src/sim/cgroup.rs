//! A real CPU capacity per simulated VM: a cgroup CPU quota on the VM's processes.
//!
//! Each simulator that has a CPU budget creates one cgroup of its own, `idch-sim-{pid}-{random}`, and
//! one child per VM, `vm-{id}`, whose quota is the budget (cgroup v1: `cpu.cfs_quota_us` against
//! `cpu.cfs_period_us`; cgroup v2: `cpu.max`). A VM's workload is moved into its child right after it
//! is spawned. The directories are removed (rmdir, once the processes are gone) when the VM is deleted
//! and when the simulator shuts down; cgroups left behind by a simulator that was killed are swept
//! the next time a simulator starts.
//!
//! Where to put them: cgroup v2 when a cgroup2 hierarchy lists `cpu` in its `cgroup.controllers`
//! (at the root of that hierarchy, the one place where enabling `+cpu` for children is always
//! allowed); else the cgroup v1 hierarchy that carries the `cpu` controller, under this process's own
//! cgroup in it. Everything here is plain file I/O on cgroupfs, which never blocks for long.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procfs::process::{MountInfo, Process};

/// cgroup v2's default period, also used for v1 when its period cannot be read.
const DEFAULT_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const MIN_QUOTA_US: u64 = 1_000;
/// Prefix of every simulator's cgroup; the stale sweep only ever touches these.
const PREFIX: &str = "idch-sim-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V1,
    V2,
}

/// One simulator's cgroup (the parent of its VMs' cgroups).
#[derive(Debug)]
pub(super) struct SimCgroup {
    version: Version,
    dir: PathBuf,
}

/// One VM's cgroup.
#[derive(Debug, Clone)]
pub(super) struct VmCgroup {
    version: Version,
    dir: PathBuf,
}

impl SimCgroup {
    /// Creates this simulator's cgroup, or says why it cannot.
    pub(super) fn create() -> Result<SimCgroup, String> {
        let (version, parent) = locate()?;
        sweep_stale(&parent);
        let suffix = {
            use rand::distributions::{Alphanumeric, DistString};
            Alphanumeric
                .sample_string(&mut rand::thread_rng(), 8)
                .to_ascii_lowercase()
        };
        let dir = parent.join(format!("{PREFIX}{}-{suffix}", std::process::id()));
        fs::create_dir(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        if version == Version::V2 {
            if let Err(err) = fs::write(dir.join("cgroup.subtree_control"), "+cpu") {
                let _ = fs::remove_dir(&dir);
                return Err(format!(
                    "cannot enable the cpu controller below {}: {err}",
                    dir.display()
                ));
            }
        }
        Ok(SimCgroup { version, dir })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn version(&self) -> Version {
        self.version
    }

    /// Creates (or reuses) the cgroup of VM `id` with a quota of `cores` CPU cores.
    pub(super) fn create_vm(&self, id: u64, cores: f64) -> io::Result<VmCgroup> {
        let dir = self.dir.join(format!("vm-{id}"));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        let vm = VmCgroup {
            version: self.version,
            dir,
        };
        if let Err(err) = vm.set_quota(cores) {
            vm.remove(Duration::ZERO);
            return Err(err);
        }
        Ok(vm)
    }

    /// Removes the simulator's cgroup (its VMs' cgroups must be gone, or at least empty: they are
    /// removed first). A cgroup that is already gone counts as removed.
    pub(super) fn remove(&self, patience: Duration) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_patiently(&entry.path(), patience);
                }
            }
        }
        if rmdir_patiently(&self.dir, patience) {
            tracing::debug!(dir = %self.dir.display(), "simulator cgroup removed");
        }
    }
}

impl VmCgroup {
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that lists the processes in this cgroup.
    pub(super) fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn set_quota(&self, cores: f64) -> io::Result<()> {
        match self.version {
            Version::V1 => {
                let period = fs::read_to_string(self.dir.join("cpu.cfs_period_us"))
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_PERIOD_US);
                fs::write(
                    self.dir.join("cpu.cfs_quota_us"),
                    quota_us(cores, period).to_string(),
                )
            }
            Version::V2 => fs::write(
                self.dir.join("cpu.max"),
                format!("{} {DEFAULT_PERIOD_US}", quota_us(cores, DEFAULT_PERIOD_US)),
            ),
        }
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub(super) fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.procs_file(), pid.to_string())
    }

    /// One rmdir; a cgroup that is already gone counts as removed. Fails (EBUSY) while a process is
    /// still in it.
    pub(super) fn try_remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Removes the cgroup, retrying while its processes finish dying (rmdir fails with EBUSY until
    /// they have exited). Returns whether it is gone.
    pub(super) fn remove(&self, patience: Duration) -> bool {
        rmdir_patiently(&self.dir, patience)
    }
}

/// The quota in microseconds per `period_us` for `cores` cores (at least the kernel's 1 ms).
pub(super) fn quota_us(cores: f64, period_us: u64) -> u64 {
    ((cores * period_us as f64).round() as u64).max(MIN_QUOTA_US)
}

/// The processes listed in a `cgroup.procs` file.
pub(super) fn read_procs(file: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(file)?
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// rmdir, retried every 10 ms for up to `patience` while the kernel still counts a process in it.
fn rmdir_patiently(dir: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return true,
            Err(err) => {
                if Instant::now() >= deadline {
                    tracing::warn!(dir = %dir.display(), %err, "cannot remove a simulated VM's cgroup");
                    return false;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where this simulator's cgroup goes: the version and the parent directory.
fn locate() -> Result<(Version, PathBuf), String> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mounts);

    // cgroup v2, when a unified hierarchy has the cpu controller.
    let mut v2_roots: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    v2_roots.extend(
        mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup2")
            .map(|m| m.mount_point.clone()),
    );
    for root in v2_roots {
        let Ok(controllers) = fs::read_to_string(root.join("cgroup.controllers")) else {
            continue;
        };
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            continue;
        }
        let subtree = root.join("cgroup.subtree_control");
        let enabled = fs::read_to_string(&subtree)
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "cpu"));
        if !enabled {
            fs::write(&subtree, "+cpu").map_err(|err| {
                format!(
                    "cannot enable the cpu controller in {}: {err}",
                    subtree.display()
                )
            })?;
        }
        return Ok((Version::V2, root));
    }

    // cgroup v1: the hierarchy that carries the cpu controller, under our own cgroup in it.
    let own_path = own_cgroup("cpu");
    let mut candidates: Vec<(PathBuf, String)> = mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" && m.super_options.contains_key("cpu"))
        .map(|m| (m.mount_point.clone(), m.root.clone()))
        .collect();
    if candidates.is_empty() {
        candidates.push(("/sys/fs/cgroup/cpu".into(), "/".into()));
    }
    for (mount, mount_root) in candidates {
        if !mount.join("cpu.cfs_quota_us").exists() {
            continue;
        }
        let parent = own_path
            .as_deref()
            .and_then(|path| {
                let rel = path.strip_prefix(mount_root.as_str()).unwrap_or(path);
                let dir = mount.join(rel.trim_start_matches('/'));
                dir.join("cpu.cfs_quota_us").exists().then_some(dir)
            })
            .unwrap_or(mount);
        return Ok((Version::V1, parent));
    }
    Err(
        "no cgroup hierarchy with the cpu controller (neither cgroup v2 with `cpu` in \
         cgroup.controllers nor cgroup v1 with cpu.cfs_quota_us)"
            .into(),
    )
}

/// The mounts listed in `/proc/self/mountinfo` (`text`), with `root` and `mount_point` unescaped
/// (the crate leaves mountinfo's octal escapes in place); lines that do not parse are skipped.
fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| MountInfo::from_line(line).ok())
        .map(|mut m| {
            m.root = unescape_octal(&m.root);
            m.mount_point = PathBuf::from(unescape_octal(&m.mount_point.to_string_lossy()));
            m
        })
        .collect()
}

/// This process's cgroup (relative to its hierarchy's root) in the cgroup v1 hierarchy that carries
/// `controller`, from `/proc/self/cgroup`.
fn own_cgroup(controller: &str) -> Option<String> {
    Process::myself()
        .and_then(|me| me.cgroups())
        .ok()?
        .into_iter()
        .find(|g| g.controllers.iter().any(|c| c == controller))
        .map(|g| g.pathname)
}

/// Whether process `pid` still exists (`/proc/{pid}`), zombies included.
fn process_exists(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| Process::new(pid).is_ok())
}

/// mountinfo writes space, tab, newline and backslash as `\040` etc.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let octal = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok());
            if let Some(value) = octal {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the empty cgroups of simulators that no longer run (killed, so they could not clean up).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if process_exists(pid) {
            continue;
        }
        let dir = entry.path();
        if let Ok(children) = fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
        }
        if fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the cgroup of a simulator that is gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        assert_eq!(quota_us(0.2, 100_000), 20_000);
        assert_eq!(quota_us(0.25, 100_000), 25_000);
        assert_eq!(quota_us(1.5, 100_000), 150_000);
        assert_eq!(quota_us(0.001, 100_000), 1_000);
    }

    #[test]
    fn mountinfo_lines() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                    not a mountinfo line\n\
                    41 31 0:38 /x\\011y /sys/fs/cgroup/a\\040b rw,relatime - cgroup2 cgroup2 rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(mounts[0].fs_type, "cgroup");
        assert!(mounts[0].super_options.contains_key("cpu"));
        assert!(mounts[1].super_options.contains_key("cpuacct"));
        assert!(!mounts[1].super_options.contains_key("cpu,cpuacct"));
        assert_eq!(mounts[2].fs_type, "cgroup2");
        assert_eq!(mounts[2].mount_point, Path::new("/sys/fs/cgroup/a b"));
        assert_eq!(mounts[2].root, "/x\ty");
        assert!(!mounts[2].super_options.contains_key("cpu"));
    }

    #[test]
    fn this_machines_mounts_and_cgroup() {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounts = parse_mountinfo(&text);
        // Every line of the kernel's mountinfo parses, the root mount among them.
        assert_eq!(mounts.len(), text.lines().count());
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
        // A cgroup v1 hierarchy with the cpu controller has our cgroup in it, as an absolute path;
        // without one, there is no such cgroup.
        let v1_cpu = mounts
            .iter()
            .any(|m| m.fs_type == "cgroup" && m.super_options.contains_key("cpu"));
        let own = own_cgroup("cpu");
        assert_eq!(own.is_some(), v1_cpu, "{own:?}");
        if let Some(path) = own {
            assert!(path.starts_with('/'), "{path}");
        }
        assert_eq!(own_cgroup("no-such-controller"), None);
    }

    #[test]
    fn processes_exist_until_reaped() {
        assert!(process_exists(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        assert!(process_exists(pid));
        child.wait().unwrap();
        assert!(!process_exists(pid));
        assert!(!process_exists(u32::MAX));
    }
}
