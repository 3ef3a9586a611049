//! Starts the test control plane (`tests/controlplane`, docs/CONTROLPLANE.md): kube-apiserver
//! with its embedded etcd, then kube-controller-manager, each as a child process that prints
//! `READY <url>` once serving. Shared by `tests/apiserver.rs` and `benches/fleet_apiserver.rs`.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// The running pair of processes and the folder with their PKI and kubeconfigs. Dropping it
/// stops both (a test binary's shared one is never dropped: its children exit with it).
pub struct ControlPlane {
    pub dir: PathBuf,
    /// The program (`controlplane`): also `controlplane kubectl …` and `controlplane client-cert …`.
    pub bin: PathBuf,
    apiserver: Child,
    controller_manager: Child,
}

impl Drop for ControlPlane {
    /// Stops both processes and removes the folder (kept after a failed test, for its logs; the
    /// next start sweeps it).
    fn drop(&mut self) {
        for child in [&mut self.controller_manager, &mut self.apiserver] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const DIR_PREFIX: &str = "botfleet-controlplane-";

/// Removes the folders of control planes whose test process has exited: each test binary leaves
/// its shared one behind (it is never dropped), about 130 MB of etcd data and logs.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts one process of the control plane and waits for its `READY <url>` line.
fn spawn(bin: &Path, role: &str, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("{role}.log"))).map_err(|e| e.to_string())?;
    let mut command = Command::new(bin);
    command.arg(role).arg(dir);
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start {role}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep reading so the pipe never fills.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(Some(Ok(line))) if line.starts_with("READY ") => Ok(child),
        other => {
            let _ = child.kill();
            Err(format!("{role} did not become ready ({other:?}); see {}/{role}.log", dir.display()))
        }
    }
}

/// Builds (when stale) and starts the pair in a fresh folder; `controller_manager_flags` are
/// passed to kube-controller-manager after its own (e.g. to switch controllers off).
pub fn start(controller_manager_flags: &[&str]) -> Result<ControlPlane, String> {
    start_named("shared", controller_manager_flags)
}

/// As `start`, for a second control plane of the same process (a test that needs cluster-scoped
/// objects, such as CRDs, to itself): `name` tells the folders apart.
pub fn start_named(name: &str, controller_manager_flags: &[&str]) -> Result<ControlPlane, String> {
    let bin = binary()?;
    sweep_stale_dirs();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let apiserver = spawn(&bin, "apiserver", &dir, &[])?;
    let controller_manager = match spawn(&bin, "controller-manager", &dir, controller_manager_flags) {
        Ok(c) => c,
        Err(e) => {
            let mut apiserver = apiserver;
            let _ = apiserver.kill();
            return Err(e);
        }
    };
    Ok(ControlPlane { dir, bin, apiserver, controller_manager })
}

/// Builds the control plane's program when stale (`tests/controlplane/build.sh`) and returns its path.
pub fn binary() -> Result<PathBuf, String> {
    let build = Command::new("bash")
        .arg(repo().join("tests/controlplane/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run tests/controlplane/build.sh: {e}"))?;
    if !build.status.success() {
        return Err(format!("tests/controlplane/build.sh failed ({})", build.status));
    }
    let stdout = String::from_utf8_lossy(&build.stdout);
    Ok(PathBuf::from(stdout.lines().last().unwrap_or_default().trim()))
}

impl ControlPlane {
    /// A client identity signed by the control plane's client CA (`controlplane client-cert`):
    /// `CN=cn`, groups `orgs`; returns the path of its kubeconfig, `DIR/<name>.kubeconfig`.
    pub fn client_cert(&self, name: &str, cn: &str, orgs: &[&str]) -> Result<PathBuf, String> {
        let out = Command::new(&self.bin)
            .arg("client-cert")
            .arg(&self.dir)
            .args([name, cn])
            .args(orgs)
            .output()
            .map_err(|e| format!("controlplane client-cert: {e}"))?;
        if !out.status.success() {
            return Err(format!("controlplane client-cert {name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(self.dir.join(format!("{name}.kubeconfig")))
    }

    /// The kubeconfig of a node identity for `node` (`CN=system:node:<node>`, `O=system:nodes`):
    /// what the process kubelet runs as.
    pub fn node_kubeconfig(&self, node: &str) -> Result<PathBuf, String> {
        self.client_cert(&format!("node-{node}"), &format!("system:node:{node}"), &["system:nodes"])
    }

    /// Runs `kubectl ARGS` (the program's own, the API server's version) as `user` (one of the
    /// DIR/<user>.kubeconfig identities), with `stdin` fed in; returns its exit status, stdout
    /// and stderr. kubectl's discovery cache goes to DIR/kubectl-cache, not the caller's HOME;
    /// relative paths are the repository's.
    pub fn kubectl(&self, user: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<(bool, String, String), String> {
        use std::io::Write as _;
        let mut child = Command::new(&self.bin)
            .arg("kubectl")
            .arg(format!("--kubeconfig={}", self.dir.join(format!("{user}.kubeconfig")).display()))
            .arg(format!("--cache-dir={}", self.dir.join("kubectl-cache").display()))
            .args(args)
            .env_remove("KUBECONFIG")
            .current_dir(repo())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run kubectl: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}
