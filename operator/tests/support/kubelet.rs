//! A process kubelet for the test control plane (docs/CONTROLPLANE.md, "The process kubelet").
//!
//! It registers a Ready Node with a Lease heartbeat in `kube-node-lease`, binds every pending pod
//! to itself (there is no scheduler) and runs each container as a local process: an image maps
//! to a binary on this machine ([`Image`]: the operator's image to the `operator` binary, the
//! runtime's to `bot-runtime`). A container gets its command and args, its environment (values,
//! `secretKeyRef`, `configMapKeyRef`, `envFrom`, the downward API), a scrubbed environment
//! otherwise (an empty HOME, no kubeconfig to fall back on, `KUBERNETES_SERVICE_HOST/PORT` of the
//! API server) and its volumes (Secret, ConfigMap, downward API, projected with a pod-bound
//! ServiceAccount token, emptyDir, hostPath) bind-mounted at their mount paths in a mount
//! namespace of its own. Secret and ConfigMap volumes are refreshed as the kubelet does it:
//! a new timestamped folder, then an atomic rename of the `..data` symlink.
//!
//! Pod network: the pods share the host's network namespace (so 127.0.0.1 — Postgres, Redis,
//! the API server, the fake Telegram — is theirs too); each pod gets its own address,
//! `10.245.K.N/32` on a dummy interface `bfkK` the kubelet creates (K is claimed through
//! `/run/botfleet-kubelet/net-K`, so kubelets of concurrent test processes never share a
//! range). Since they share one namespace, two pods cannot both listen on `0.0.0.0:8080`: for
//! the images it knows, the kubelet sets the listen-address variable to the pod's address
//! ([`Image::listen_env`]). Pod addresses back EndpointSlices as on a real node.
//!
//! Status: container states, readiness and liveness from the pod's httpGet/tcpSocket probes,
//! the Ready/ContainersReady conditions, restarts with restartCount and the kubelet's back-off
//! (the first restart at once, then 10 s doubling to 5 min), termination messages from
//! `terminationMessagePath` (a file bind-mounted there) or the log's tail
//! (`FallbackToLogsOnError`). Deletion: SIGTERM to the container's process group, the grace
//! period, SIGKILL, then the final delete (grace 0, with the pod's uid as precondition).
//!
//! Credentials: the kubelet runs as its node, `system:node:<node>` in `system:nodes` (a client
//! certificate of the control plane's CA, `ControlPlane::node_kubeconfig`), so the Node
//! authorizer and NodeRestriction admission hold it to what a real kubelet may do: its own Node
//! and Lease, the pods bound to it (listed with `spec.nodeName=<node>`, their status, their
//! final delete), and only the Secrets, ConfigMaps and ServiceAccount tokens those pods use
//! (read one by one, reused for five seconds, as the kubelet's TTL cache does). Binding a pending
//! pod is the scheduler's part, which a node may not do: the kubelet binds with a second,
//! scheduler credential (`system:kube-scheduler`, `KubeletConfig::binder_kubeconfig`). Deleting
//! its Node (a stale one before registering, its own when it stops) is no node's right either:
//! that uses `KubeletConfig::admin_kubeconfig`, for nothing else.
//!
//! securityContext: `runAsUser`, `runAsGroup` (the container's, else the pod's), `fsGroup` and
//! `supplementalGroups` are applied (setgroups/setgid/setuid after the mounts, before exec);
//! with an fsGroup, Secret, ConfigMap, downward API and projected files belong to that group
//! and are group-readable (mode | 0440, as the kubelet's SetVolumeOwnership); an emptyDir is
//! 0777 and the termination-message file 0666; `runAsNonRoot` with no non-zero user refuses the
//! container (CreateContainerConfigError, the kubelet's message). Not applied:
//! `readOnlyRootFilesystem` (the root is the host's), `capabilities` (a non-root user has none
//! after setuid; a root container keeps all), `allowPrivilegeEscalation`/no_new_privs, seccomp,
//! AppArmor and SELinux.
//!
//! Not supported (docs/CONTROLPLANE.md lists them): logs and exec through the API, port-forward,
//! init and ephemeral containers, exec probes, the rest of securityContext (above), resource
//! limits, NetworkPolicy, Services' cluster IPs (no kube-proxy) and cluster DNS, image pulls (an
//! unmapped image is `ErrImagePull`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Probe, Secret, ServiceAccount, Volume};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio::sync::watch;

/// An image the kubelet can run: its repository (the image reference without tag or digest,
/// or a prefix ending in `/`) and the local binary that is its entrypoint.
#[derive(Debug, Clone)]
pub struct Image {
    pub repository: String,
    pub binary: PathBuf,
    /// The variable the program reads its listen address from, with the port it defaults to:
    /// the kubelet sets it to `<pod IP>:<port>` (keeping a port the pod spec gives).
    pub listen_env: Option<(&'static str, u16)>,
}

impl Image {
    fn matches(&self, image: &str) -> bool {
        if self.repository.ends_with('/') {
            return image.starts_with(&self.repository);
        }
        repository_of(image) == self.repository
    }
}

/// `registry:5000/a/b:tag@sha256:…` → `registry:5000/a/b`.
fn repository_of(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

pub struct KubeletConfig {
    pub node: String,
    /// The kubelet's credentials: a node identity (`CN=system:node:<node>`, `O=system:nodes`,
    /// `ControlPlane::client_cert`), so the Node authorizer and NodeRestriction hold it to its
    /// own Node, its own pods and the Secrets, ConfigMaps and ServiceAccount tokens they use.
    pub kubeconfig: PathBuf,
    /// The credentials it binds pending pods with: binding is the scheduler's part, not a
    /// node's (which may not bind), so it is done as `system:kube-scheduler` (the control
    /// plane's `scheduler.kubeconfig`).
    pub binder_kubeconfig: PathBuf,
    /// The credentials that remove a stale Node of the same name before registering, and the
    /// kubelet's Node when it stops: a node may create and update its Node, never delete it (the
    /// bootstrap node rules), so that is a cluster admin's part (the control plane's
    /// `admin.kubeconfig`).
    pub admin_kubeconfig: PathBuf,
    /// The API server's CA (what pods get as `ca.crt`).
    pub ca_file: PathBuf,
    /// Where pods' volumes, logs and termination messages live.
    pub root: PathBuf,
    pub images: Vec<Image>,
}

/// The running kubelet. Dropping it stops every pod's processes (SIGKILL), deletes the Node and
/// removes its network interface. A test binary's shared kubelet is never dropped: its processes
/// die with the test process (`PR_SET_PDEATHSIG` from the kubelet's own thread), and the next
/// kubelet start removes the interfaces of kubelets whose process has exited.
pub struct Kubelet {
    pub node: String,
    /// Its node identity's kubeconfig (`KubeletConfig::kubeconfig`).
    pub kubeconfig: PathBuf,
    pub node_ip: Ipv4Addr,
    pub root: PathBuf,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    net: Network,
    /// Process group (= pid) of every running container, by "uid/container".
    processes: Mutex<HashMap<String, i32>>,
}

impl Shared {
    fn kill_all(&self) {
        for (_, pid) in self.processes.lock().expect("processes").drain() {
            // SAFETY: signalling a process group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.kill_all();
    }
}

impl Kubelet {
    /// Claims a pod network, starts the kubelet on a thread of its own (with its own runtime:
    /// it outlives the test that starts it) and waits for its Node to be registered.
    pub fn start(config: KubeletConfig) -> Result<Kubelet, String> {
        std::fs::create_dir_all(&config.root).map_err(|e| format!("{}: {e}", config.root.display()))?;
        let net = Network::claim()?;
        let node_ip = net.node_ip();
        let shared = Arc::new(Shared { net, processes: Mutex::new(HashMap::new()) });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let node = config.node.clone();
        let root = config.root.clone();
        let kubeconfig = config.kubeconfig.clone();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kubelet-{node}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("kubelet runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(run(Arc::new(config), for_thread, stop_rx, ready_tx));
            })
            .map_err(|e| format!("kubelet thread: {e}"))?;
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(Kubelet { node, node_ip, kubeconfig, root, shared, stop: Some(stop_tx), thread: Some(thread) }),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("the kubelet did not register its Node: {e}")),
        }
    }

    /// The network interface holding the node's and the pods' addresses.
    pub fn interface(&self) -> String {
        self.shared.net.link()
    }

    /// The pid of a running container (its process group), if it runs.
    pub fn pid(&self, pod_uid: &str, container: &str) -> Option<i32> {
        self.shared.processes.lock().expect("processes").get(&format!("{pod_uid}/{container}")).copied()
    }

    /// Kills a running container (SIGKILL to its process group), as a crash would: the
    /// kubelet restarts it by the pod's restart policy.
    pub fn kill(&self, pod_uid: &str, container: &str) -> Result<(), String> {
        let pid = self.pid(pod_uid, container).ok_or_else(|| format!("{container} of pod {pod_uid} is not running"))?;
        // SAFETY: signalling a process group the kubelet created.
        if unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().to_string()) }
    }

    /// Runs `argv` inside a running container's mount namespace (`nsenter --mount`), as
    /// `kubectl exec` would (same files, not the same environment); returns its stdout.
    pub fn exec(&self, pod_uid: &str, container: &str, argv: &[&str]) -> Result<String, String> {
        let pid = self.pid(pod_uid, container).ok_or_else(|| format!("{container} of pod {pod_uid} is not running"))?;
        let out = std::process::Command::new("nsenter")
            .arg(format!("--target={pid}"))
            .arg("--mount")
            .arg("--")
            .args(argv)
            .output()
            .map_err(|e| format!("nsenter: {e}"))?;
        if !out.status.success() {
            return Err(format!("{argv:?} in {container}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A container's output (stdout and stderr) of its `restart`-th run.
    pub fn log(&self, pod_uid: &str, container: &str, restart: i32) -> String {
        std::fs::read_to_string(log_path(&self.root, pod_uid, container, restart)).unwrap_or_default()
    }
}

fn log_path(root: &Path, uid: &str, container: &str, restart: i32) -> PathBuf {
    root.join("logs").join(uid).join(format!("{container}-{restart}.log"))
}

// ---------------------------------------------------------------------------------------------
// Pod network

const NET_DIR: &str = "/run/botfleet-kubelet";

/// `10.245.K.0/24` on the dummy interface `bfkK`: .1 is the node, .2–.254 the pods.
struct Network {
    index: u8,
    lock: PathBuf,
    /// Free host numbers, the least recently released first (as host-local IPAM hands them out).
    free: Mutex<std::collections::VecDeque<u8>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}

impl Network {
    fn claim() -> Result<Network, String> {
        std::fs::create_dir_all(NET_DIR).map_err(|e| format!("{NET_DIR}: {e}"))?;
        for index in 0..=255u8 {
            let lock = Path::new(NET_DIR).join(format!("net-{index}"));
            for _attempt in 0..2 {
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
                    Ok(mut f) => {
                        use std::io::Write as _;
                        let _ = write!(f, "{}", std::process::id());
                        let net = Network { index, lock: lock.clone(), free: Mutex::new((2..=254).collect()) };
                        on_exit(index, true);
                        let link = net.link();
                        let _ = ip(&["link", "del", &link]);
                        ip(&["link", "add", &link, "type", "bridge"])?;
                        ip(&["link", "set", &link, "up"])?;
                        ip(&["addr", "add", &format!("{}/32", net.node_ip()), "dev", &link])?;
                        return Ok(net);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Taken: by a live process, or left behind by one that exited.
                        let owner = std::fs::read_to_string(&lock).unwrap_or_default();
                        let alive = owner.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                        if alive {
                            break;
                        }
                        let _ = ip(&["link", "del", &format!("bfk{index}")]);
                        let _ = std::fs::remove_file(&lock);
                    }
                    Err(e) => return Err(format!("{}: {e}", lock.display())),
                }
            }
        }
        Err("no free pod network (every /run/botfleet-kubelet/net-K is taken)".into())
    }

    fn link(&self) -> String {
        format!("bfk{}", self.index)
    }

    fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 245, self.index, 1)
    }

    fn assign(&self) -> Result<Ipv4Addr, String> {
        let host = self.free.lock().expect("addresses").pop_front().ok_or("the pod network is full")?;
        let addr = Ipv4Addr::new(10, 245, self.index, host);
        ip(&["addr", "add", &format!("{addr}/32"), "dev", &self.link()])?;
        Ok(addr)
    }

    fn release(&self, addr: Ipv4Addr) {
        let _ = ip(&["addr", "del", &format!("{addr}/32"), "dev", &self.link()]);
        self.free.lock().expect("addresses").push_back(addr.octets()[3]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.link()]);
        let _ = std::fs::remove_file(&self.lock);
        on_exit(self.index, false);
    }
}

/// The networks this process holds, removed at its exit: a test binary's shared kubelet is
/// never dropped, and its interface would stay until the next kubelet start swept it.
static HELD: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn on_exit(index: u8, held: bool) {
    extern "C" fn release_all() {
        let held = HELD.lock().map(|h| h.clone()).unwrap_or_default();
        for index in held {
            let _ = ip(&["link", "del", &format!("bfk{index}")]);
            let _ = std::fs::remove_file(Path::new(NET_DIR).join(format!("net-{index}")));
        }
    }
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain function; it runs once, at exit.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(release_all);
    });
    let mut list = HELD.lock().expect("held networks");
    list.retain(|i| *i != index);
    if held {
        list.push(index);
    }
}

// ---------------------------------------------------------------------------------------------
// The kubelet's loop

struct Ctx {
    client: Client,
    /// `KubeletConfig::admin_kubeconfig`'s: only to delete the Node.
    admin: Client,
    config: Arc<KubeletConfig>,
    shared: Arc<Shared>,
    api_host: String,
    api_port: u16,
    /// Secrets and ConfigMaps as last read, by namespace and name (see `cached`).
    secrets: ObjectCache<Secret>,
    config_maps: ObjectCache<ConfigMap>,
    http: reqwest::Client,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

async fn client_from(path: &Path) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    let kc = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(|e| format!("{e}"))?;
    Client::try_from(kc).map_err(|e| format!("{e}"))
}

async fn run(
    config: Arc<KubeletConfig>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let started = async {
        let kubeconfig = Kubeconfig::read_from(&config.kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
        let kc = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(|e| format!("{e}"))?;
        let api_host = kc.cluster_url.host().unwrap_or("127.0.0.1").to_string();
        let api_port = kc.cluster_url.port_u16().unwrap_or(443);
        let client = Client::try_from(kc).map_err(|e| format!("{e}"))?;
        let binder = client_from(&config.binder_kubeconfig).await?;
        let admin = client_from(&config.admin_kubeconfig).await?;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| format!("{e}"))?;
        let ctx = Arc::new(Ctx {
            client,
            admin,
            config: config.clone(),
            shared: shared.clone(),
            api_host,
            api_port,
            secrets: Mutex::default(),
            config_maps: Mutex::default(),
            http,
        });
        register_node(&ctx).await?;
        Ok::<_, String>((ctx, binder))
    };
    let (ctx, binder) = match started.await {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    tokio::spawn(heartbeat(ctx.clone()));
    let binding = tokio::spawn(bind_pending(binder, ctx.config.node.clone()));
    let _ = ready.send(Ok(()));

    // The pods bound to this node: all a node may list (the Node authorizer checks the selector).
    let on_this_node = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node));
    let pods = watcher(Api::<Pod>::all(ctx.client.clone()), on_this_node).default_backoff();
    let mut pods = std::pin::pin!(pods);
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // The pods of a (re)list: a pod deleted while the watch was down is missing from it.
    let mut listed: Option<std::collections::HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = pods.next() => match event {
                Some(Ok(watcher::Event::Init)) => listed = Some(Default::default()),
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(listed) = listed.take() {
                        for (_, tx) in workers.extract_if(|uid, _| !listed.contains(uid)) {
                            let _ = tx.send(None);
                        }
                    }
                }
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(listed) = listed.as_mut() {
                        listed.insert(uid.clone());
                    }
                    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                        Some(node) if node == ctx.config.node => {
                            if let Some(tx) = workers.get(&uid) {
                                let _ = tx.send(Some(pod));
                            } else {
                                let (tx, rx) = watch::channel(Some(pod));
                                running.push(tokio::spawn(pod_worker(ctx.clone(), rx)));
                                workers.insert(uid, tx);
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = workers.remove(pod.metadata.uid.as_deref().unwrap_or_default()) {
                        let _ = tx.send(None);
                    }
                }
                Some(Err(e)) => eprintln!("kubelet: pod watch: {e}"),
                None => break,
            }
        }
    }
    // Stopped: every pod's containers are killed and reaped (no zombie is left), then the Node goes.
    binding.abort();
    for (_, tx) in workers.drain() {
        let _ = tx.send(None);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(running)).await;
    shared.kill_all();
    let _ = Api::<Node>::all(ctx.admin.clone()).delete(&ctx.config.node, &DeleteParams::default()).await;
}

async fn register_node(ctx: &Ctx) -> Result<(), String> {
    let nodes = Api::<Node>::all(ctx.client.clone());
    let name = &ctx.config.node;
    let _ = Api::<Node>::all(ctx.admin.clone()).delete(name, &DeleteParams::default()).await;
    for _ in 0..50 {
        if nodes.get_opt(name).await.map_err(|e| e.to_string())?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH,
            "node.kubernetes.io/instance-type": "botfleet-process-kubelet",
        }},
        "spec": {},
    }))
    .map_err(|e| e.to_string())?;
    nodes.create(&PostParams::default(), &node).await.map_err(|e| format!("registering the Node: {e}"))?;
    node_status(ctx).await
}

async fn node_status(ctx: &Ctx) -> Result<(), String> {
    let t = now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| json!({"type": type_, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": t, "lastTransitionTime": t});
    let resources = json!({"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"});
    let status = json!({"status": {
        "conditions": [
            condition("Ready", "True", "KubeletReady", "the process kubelet is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
        ],
        "addresses": [{"type": "InternalIP", "address": ctx.shared.net.node_ip().to_string()}, {"type": "Hostname", "address": ctx.config.node}],
        "capacity": resources, "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "botfleet", "systemUUID": "botfleet", "bootID": "botfleet", "kernelVersion": "", "osImage": "process kubelet",
            "containerRuntimeVersion": "process://1", "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    }});
    Api::<Node>::all(ctx.client.clone())
        .patch_status(&ctx.config.node, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map(|_| ())
        .map_err(|e| format!("the Node's status: {e}"))
}

/// Renews the node's Lease every 10 s (what the node lifecycle controller watches) and posts
/// the Node's status every minute.
async fn heartbeat(ctx: Arc<Ctx>) {
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(ctx.client.clone(), "kube-node-lease");
    let mut tick = 0u32;
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": ctx.config.node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": ctx.config.node, "leaseDurationSeconds": 40, "renewTime": now_micro()},
        });
        if let Err(e) = leases.patch(&ctx.config.node, &PatchParams::apply("botfleet-kubelet").force(), &Patch::Apply(lease)).await {
            eprintln!("kubelet: lease: {e}");
        }
        if tick % 6 == 5
            && let Err(e) = node_status(&ctx).await
        {
            eprintln!("kubelet: {e}");
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The scheduler's part, with the scheduler's credentials (`KubeletConfig::binder_kubeconfig`):
/// every pending pod goes to this node.
async fn bind_pending(binder: Client, node: String) {
    let pending = watcher::Config::default().fields("spec.nodeName=");
    let mut pods = std::pin::pin!(watcher(Api::<Pod>::all(binder.clone()), pending).default_backoff());
    while let Some(event) = pods.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) if pod.metadata.deletion_timestamp.is_none() => {
                tokio::spawn(bind(binder.clone(), node.clone(), pod));
            }
            Ok(_) => {}
            Err(e) => eprintln!("kubelet: pending pods watch: {e}"),
        }
    }
}

async fn bind(binder: Client, node: String, pod: Pod) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else { return };
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let pods = Api::<Pod>::namespaced(binder, ns);
    match pods.create_subresource::<_, Value>("binding", name, &PostParams::default(), &binding).await {
        Ok(_) => {}
        // Already bound (an older event) or gone.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => eprintln!("kubelet: binding {ns}/{name}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// One pod

#[derive(Default)]
struct ProbeState {
    successes: i32,
    failures: i32,
    next: Option<Instant>,
}

struct Run {
    name: String,
    child: Option<std::process::Child>,
    started_at: Option<String>,
    started: Option<Instant>,
    restarts: i32,
    /// The last run's end (for lastState / state).
    terminated: Option<Value>,
    waiting: Option<(String, String)>,
    /// When the next start may happen (back-off), and the back-off after the next crash.
    not_before: Option<Instant>,
    back_off: Option<Duration>,
    ready: bool,
    readiness: ProbeState,
    liveness: ProbeState,
    /// Not to be started again (restart policy).
    done: bool,
}

impl Run {
    fn new(name: &str) -> Self {
        Run {
            name: name.into(),
            child: None,
            started_at: None,
            started: None,
            restarts: 0,
            terminated: None,
            waiting: Some(("ContainerCreating".into(), String::new())),
            not_before: None,
            back_off: None,
            ready: false,
            readiness: ProbeState::default(),
            liveness: ProbeState::default(),
            done: false,
        }
    }
}

struct PodCtx {
    ctx: Arc<Ctx>,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    ip: Ipv4Addr,
    start_time: String,
    /// When this kubelet took the pod on: reads older than that are not reused for it (see `cached`).
    registered: Instant,
    /// Files currently in each atomically written volume (to write only on a change).
    volumes: HashMap<String, Vec<(String, Vec<u8>, u32)>>,
    volume_error: Option<String>,
    /// ServiceAccount tokens by (audience, expiration): (token, refresh after).
    tokens: HashMap<(String, i64), (String, Instant)>,
}

async fn pod_worker(ctx: Arc<Ctx>, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(first) = rx.borrow().clone() else { return };
    let uid = first.metadata.uid.clone().unwrap_or_default();
    let ip = match ctx.shared.net.assign() {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("kubelet: {e}");
            return;
        }
    };
    let mut p = PodCtx {
        ctx: ctx.clone(),
        uid: uid.clone(),
        ns: first.metadata.namespace.clone().unwrap_or_default(),
        name: first.metadata.name.clone().unwrap_or_default(),
        dir: ctx.config.root.join("pods").join(&uid),
        ip,
        start_time: now(),
        registered: Instant::now(),
        volumes: HashMap::new(),
        volume_error: None,
        tokens: HashMap::new(),
    };
    let containers: Vec<Container> = first.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    let mut runs: Vec<Run> = containers.iter().map(|c| Run::new(&c.name)).collect();
    let mut last_status = Value::Null;
    loop {
        let current = rx.borrow().clone();
        let Some(pod) = current else {
            // Removed from the API (force-deleted): stop at once.
            stop_all(&p, &mut runs, Duration::ZERO).await;
            break;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            stop_all(&p, &mut runs, Duration::from_secs(u64::try_from(grace).unwrap_or(0))).await;
            let status = pod_status(&p, &pod, &runs);
            let _ = write_status(&p, status).await;
            let api = Api::<Pod>::namespaced(ctx.client.clone(), &p.ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&p.name, &params).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
            {
                eprintln!("kubelet: final delete of {}/{}: {e}", p.ns, p.name);
            }
            break;
        }
        step(&mut p, &pod, &mut runs).await;
        let status = pod_status(&p, &pod, &runs);
        if status != last_status && write_status(&p, status.clone()).await.is_ok() {
            last_status = status;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { stop_all(&p, &mut runs, Duration::ZERO).await; break; },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    ctx.shared.net.release(ip);
    let _ = std::fs::remove_dir_all(&p.dir);
}

async fn write_status(p: &PodCtx, status: Value) -> Result<(), ()> {
    let api = Api::<Pod>::namespaced(p.ctx.client.clone(), &p.ns);
    match api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                eprintln!("kubelet: status of {}/{}: {e}", p.ns, p.name);
            }
            Err(())
        }
    }
}

/// One pass: volumes, reaping, (re)starts, probes.
async fn step(p: &mut PodCtx, pod: &Pod, runs: &mut [Run]) {
    let Some(spec) = pod.spec.as_ref() else { return };
    p.volume_error = sync_volumes(p, pod).await.err();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    for (c, run) in spec.containers.iter().zip(runs.iter_mut()) {
        // Reap.
        if let Some(child) = run.child.as_mut()
            && let Ok(Some(exit)) = child.try_wait()
        {
            use std::os::unix::process::ExitStatusExt as _;
            p.ctx.shared.processes.lock().expect("processes").remove(&format!("{}/{}", p.uid, c.name));
            run.child = None;
            let code = exit.code().unwrap_or_else(|| 128 + exit.signal().unwrap_or(0));
            let message = termination_message(p, c, run.restarts, code);
            let mut terminated = json!({
                "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": run.started_at, "finishedAt": now(), "containerID": format!("process://{}", p.uid),
            });
            if let Some(sig) = exit.signal() {
                terminated["signal"] = json!(sig);
            }
            if !message.is_empty() {
                terminated["message"] = json!(message);
            }
            run.terminated = Some(terminated);
            run.ready = false;
            run.readiness = ProbeState::default();
            run.liveness = ProbeState::default();
            let restart = match policy {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            if !restart {
                run.done = true;
                continue;
            }
            // The kubelet's back-off: the first restart at once, then 10 s, doubling to 5 min;
            // a run of 10 minutes resets it.
            if run.started.is_some_and(|s| s.elapsed() >= Duration::from_secs(600)) {
                run.back_off = None;
            }
            match run.back_off {
                None => {
                    run.not_before = None;
                    run.back_off = Some(Duration::from_secs(10));
                }
                Some(d) => {
                    run.not_before = Some(Instant::now() + d);
                    run.waiting = Some((
                        "CrashLoopBackOff".into(),
                        format!("back-off {}s restarting failed container={} pod={}_{}({})", d.as_secs(), c.name, p.name, p.ns, p.uid),
                    ));
                    run.back_off = Some((d * 2).min(Duration::from_secs(300)));
                }
            }
            run.restarts += 1;
        }
        // Start.
        if run.child.is_none() && !run.done && run.not_before.is_none_or(|t| Instant::now() >= t) {
            if let Some(err) = &p.volume_error {
                run.waiting = Some(("ContainerCreating".into(), err.clone()));
                continue;
            }
            match start_container(p, pod, c, run.restarts).await {
                Ok(child) => {
                    let pid = child.id() as i32;
                    p.ctx.shared.processes.lock().expect("processes").insert(format!("{}/{}", p.uid, c.name), pid);
                    run.child = Some(child);
                    run.started_at = Some(now());
                    run.started = Some(Instant::now());
                    run.waiting = None;
                    run.not_before = None;
                }
                Err((reason, message)) => {
                    run.waiting = Some((reason, message));
                    run.not_before = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        // Probes.
        if run.child.is_some() {
            let started = run.started.unwrap_or_else(Instant::now);
            match &c.readiness_probe {
                None => run.ready = true,
                Some(probe) => {
                    if let Some(ok) = due_probe(p, c, probe, &mut run.readiness, started).await {
                        if ok && run.readiness.successes >= probe.success_threshold.unwrap_or(1) {
                            run.ready = true;
                        }
                        if !ok && run.readiness.failures >= probe.failure_threshold.unwrap_or(3) {
                            run.ready = false;
                        }
                    }
                }
            }
            if let Some(probe) = &c.liveness_probe
                && let Some(false) = due_probe(p, c, probe, &mut run.liveness, started).await
                && run.liveness.failures >= probe.failure_threshold.unwrap_or(3)
                && let Some(pid) = run.child.as_ref().map(|ch| ch.id())
            {
                eprintln!("kubelet: {}/{} container {} failed its liveness probe: restarting", p.ns, p.name, c.name);
                let grace = spec.termination_grace_period_seconds.unwrap_or(30);
                stop_process(pid as i32, run.child.as_mut(), Duration::from_secs(u64::try_from(grace).unwrap_or(0))).await;
            }
        }
    }
}

/// Runs the probe when it is due; Some(outcome) when it ran.
async fn due_probe(p: &PodCtx, c: &Container, probe: &Probe, state: &mut ProbeState, started: Instant) -> Option<bool> {
    let now = Instant::now();
    let next =
        *state.next.get_or_insert(started + Duration::from_secs(u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0)));
    if now < next {
        return None;
    }
    state.next = Some(now + Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10)));
    let timeout = Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    let port_of = |port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| match port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => Some(*n),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            c.ports.as_ref()?.iter().find(|cp| cp.name.as_deref() == Some(name)).map(|cp| cp.container_port)
        }
    };
    let ok = if let Some(get) = &probe.http_get {
        let host = get.host.clone().unwrap_or_else(|| p.ip.to_string());
        match port_of(&get.port) {
            Some(port) => {
                let url = format!("http://{host}:{port}{}", get.path.as_deref().unwrap_or("/"));
                let answer = p.ctx.http.get(&url).timeout(timeout).send().await;
                answer.is_ok_and(|r| r.status().as_u16() >= 200 && r.status().as_u16() < 400)
            }
            None => false,
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match port_of(&tcp.port) {
            Some(port) => {
                let addr = format!("{}:{port}", tcp.host.clone().unwrap_or_else(|| p.ip.to_string()));
                matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
            }
            None => false,
        }
    } else {
        // exec and gRPC probes are not supported: they never succeed, which shows.
        false
    };
    if ok {
        state.successes += 1;
        state.failures = 0;
    } else {
        state.failures += 1;
        state.successes = 0;
    }
    Some(ok)
}

/// SIGTERM to the process group, `grace` to exit, then SIGKILL.
async fn stop_process(pid: i32, child: Option<&mut std::process::Child>, grace: Duration) {
    // SAFETY: signalling the process group we created for the container.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    let Some(child) = child else { return };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    while matches!(child.try_wait(), Ok(None)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop_all(p: &PodCtx, runs: &mut [Run], grace: Duration) {
    let stops = runs.iter_mut().filter_map(|run| {
        let pid = run.child.as_ref()?.id() as i32;
        Some((run, pid))
    });
    let mut waits = Vec::new();
    for (run, pid) in stops {
        waits.push(async move {
            stop_process(pid, run.child.as_mut(), grace).await;
            let exit = run.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            run.child = None;
            run.ready = false;
            let code = exit.map_or(137, |e| {
                use std::os::unix::process::ExitStatusExt as _;
                e.code().unwrap_or_else(|| 128 + e.signal().unwrap_or(9))
            });
            run.terminated = Some(json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": run.started_at, "finishedAt": now()}));
            run.done = true;
        });
    }
    futures::future::join_all(waits).await;
    let mut processes = p.ctx.shared.processes.lock().expect("processes");
    for run in runs.iter() {
        processes.remove(&format!("{}/{}", p.uid, run.name));
    }
}

fn termination_message(p: &PodCtx, c: &Container, restarts: i32, code: i32) -> String {
    let file = p.dir.join("termination").join(&c.name);
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    if !written.trim().is_empty() {
        return written.chars().take(4096).collect();
    }
    if code != 0 && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        // The kubelet's fallback: the last 80 lines, at most 2048 bytes.
        let log = std::fs::read_to_string(log_path(&p.ctx.config.root, &p.uid, &c.name, restarts)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        let start = tail.len().saturating_sub(2048);
        let start = (start..=tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        return tail[start..].to_string();
    }
    String::new()
}

fn pod_status(p: &PodCtx, pod: &Pod, runs: &[Run]) -> Value {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut statuses = Vec::new();
    for (c, run) in containers.iter().zip(runs) {
        let state = if run.child.is_some() {
            json!({"running": {"startedAt": run.started_at}})
        } else if let Some((reason, message)) = &run.waiting
            && !run.done
        {
            json!({"waiting": {"reason": reason, "message": message}})
        } else if let Some(t) = &run.terminated {
            json!({"terminated": t})
        } else {
            json!({"waiting": {"reason": "ContainerCreating"}})
        };
        let last = match (&run.terminated, state.get("terminated")) {
            (Some(t), None) => json!({"terminated": t}),
            _ => json!({}),
        };
        statuses.push(json!({
            "name": c.name, "image": c.image, "imageID": "", "containerID": format!("process://{}/{}", p.uid, c.name),
            "ready": run.ready && run.child.is_some(), "started": run.child.is_some(), "restartCount": run.restarts,
            "state": state, "lastState": last,
        }));
    }
    let all_ready = !runs.is_empty() && runs.iter().all(|r| r.ready && r.child.is_some());
    let ever_started = runs.iter().all(|r| r.started_at.is_some());
    let phase = if runs.iter().all(|r| r.done) && !runs.is_empty() {
        let ok = runs.iter().all(|r| r.terminated.as_ref().and_then(|t| t["exitCode"].as_i64()) == Some(0));
        if ok { "Succeeded" } else { "Failed" }
    } else if ever_started {
        "Running"
    } else {
        "Pending"
    };
    let t = p.start_time.clone();
    let cond = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": t});
    let not_ready: Vec<&str> = runs.iter().filter(|r| !(r.ready && r.child.is_some())).map(|r| r.name.as_str()).collect();
    let mut ready = cond("Ready", all_ready);
    let mut containers_ready = cond("ContainersReady", all_ready);
    if !all_ready {
        let why = format!("containers with unready status: [{}]", not_ready.join(" "));
        for c in [&mut ready, &mut containers_ready] {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(why);
        }
    }
    json!({
        "phase": phase,
        "conditions": [cond("PodReadyToStartContainers", true), cond("Initialized", true), ready, containers_ready, cond("PodScheduled", true)],
        "hostIP": p.ctx.shared.net.node_ip().to_string(), "hostIPs": [{"ip": p.ctx.shared.net.node_ip().to_string()}],
        "podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}],
        "startTime": p.start_time,
        "containerStatuses": statuses,
    })
}

// ---------------------------------------------------------------------------------------------
// Containers

type Failure = (String, String);

/// Objects by (namespace, name): when read, and what was read (None: not found).
type ObjectCache<K> = Mutex<HashMap<(String, String), (Instant, Option<K>)>>;

/// How long a Secret or ConfigMap read is reused (the kubelet's TTL cache strategy): every pod
/// worker looks at its volumes four times a second, and 100 runtime pods re-reading their four
/// objects each second means about 400 GETs a second (counted from the objects, not measured)
/// on the 2-core machine's API server. An edit reaches running pods within this (a real
/// kubelet takes up to its sync period, a minute).
const OBJECT_TTL: Duration = Duration::from_secs(5);

/// A Secret or ConfigMap a pod uses, read by name — a node may read only those (the Node
/// authorizer), so it cannot watch them all — and reused for `OBJECT_TTL`, but never one read
/// before the pod was taken on (`not_before`): a new pod starts with what is there now (the
/// kubelet's cache manager refreshes a pod's objects when it registers the pod; a rolled pod
/// must get the rotated token, not a copy from seconds ago). Failures are not kept (a pod bound a moment ago
/// may be refused until the authorizer's graph has it).
async fn cached<K>(client: &Client, cache: &ObjectCache<K>, ns: &str, name: &str, not_before: Instant) -> Result<Option<K>, String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let key = (ns.to_string(), name.to_string());
    if let Some((at, object)) = cache.lock().expect("cache").get(&key)
        && *at >= not_before
        && at.elapsed() < OBJECT_TTL
    {
        return Ok(object.clone());
    }
    let object = Api::<K>::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| e.to_string())?;
    cache.lock().expect("cache").insert(key, (Instant::now(), object.clone()));
    Ok(object)
}

async fn get_secret(p: &PodCtx, name: &str) -> Result<Option<Secret>, String> {
    cached(&p.ctx.client, &p.ctx.secrets, &p.ns, name, p.registered).await
}

async fn get_config_map(p: &PodCtx, name: &str) -> Result<Option<ConfigMap>, String> {
    cached(&p.ctx.client, &p.ctx.config_maps, &p.ns, name, p.registered).await
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

fn config_map_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = c.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    for (k, v) in c.binary_data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

/// The downward API: a pod field, as `fieldRef.fieldPath` names it.
fn field(p: &PodCtx, pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let in_map = |map: &Option<BTreeMap<String, String>>, key: &str| map.as_ref().and_then(|m| m.get(key).cloned()).unwrap_or_default();
    let key_of = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")).map(str::to_string);
    Ok(match path {
        "metadata.name" => p.name.clone(),
        "metadata.namespace" => p.ns.clone(),
        "metadata.uid" => p.uid.clone(),
        "spec.nodeName" => p.ctx.config.node.clone(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => p.ip.to_string(),
        "status.hostIP" | "status.hostIPs" => p.ctx.shared.net.node_ip().to_string(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" { &m.labels } else { &m.annotations };
            map.clone().unwrap_or_default().iter().map(|(k, v)| format!("{k}={v:?}\n")).collect()
        }
        _ => {
            if let Some(key) = key_of("metadata.labels['") {
                in_map(&m.labels, &key)
            } else if let Some(key) = key_of("metadata.annotations['") {
                in_map(&m.annotations, &key)
            } else {
                return Err(format!("the downward API field {path} is not supported by the process kubelet"));
            }
        }
    })
}

/// `$(VAR)` references to earlier variables, as the kubelet expands them (`$$` escapes).
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| *k == inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn container_env(p: &PodCtx, pod: &Pod, c: &Container, image: &Image) -> Result<Vec<(String, String)>, Failure> {
    let config_error = |m: String| ("CreateContainerConfigError".to_string(), m);
    let home = p.dir.join("home");
    let _ = std::fs::create_dir_all(&home);
    let port = p.ctx.api_port.to_string();
    let host = p.ctx.api_host.clone();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOSTNAME".into(), p.name.clone()),
        ("HOME".into(), home.display().to_string()),
        ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
        ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
    ];
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            match get_secret(p, &r.name).await.map_err(config_error)? {
                Some(s) => {
                    env.extend(secret_data(&s).into_iter().map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned())))
                }
                None if r.optional == Some(true) => {}
                None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match get_config_map(p, &r.name).await.map_err(config_error)? {
                Some(cm) => env.extend(
                    config_map_data(&cm).into_iter().map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned())),
                ),
                None if r.optional == Some(true) => {}
                None => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
            }
        }
    }
    for var in c.env.clone().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match get_secret(p, &r.name).await.map_err(config_error)? {
                        Some(s) => match secret_data(&s).get(&r.key) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if optional => continue,
                            None => return Err(config_error(format!("couldn't find key {} in Secret {}/{}", r.key, p.ns, r.name))),
                        },
                        None if optional => continue,
                        None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
                    }
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match get_config_map(p, &r.name).await.map_err(config_error)? {
                        Some(cm) => match config_map_data(&cm).get(&r.key) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if optional => continue,
                            None => return Err(config_error(format!("couldn't find key {} in ConfigMap {}/{}", r.key, p.ns, r.name))),
                        },
                        None if optional => continue,
                        None => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
                    }
                } else if let Some(f) = &from.field_ref {
                    field(p, pod, &f.field_path).map_err(config_error)?
                } else {
                    return Err(config_error(format!("{}: resourceFieldRef is not supported by the process kubelet", var.name)));
                }
            }
            (Some(v), None) => expand(v, &env),
            (None, None) => String::new(),
        };
        env.retain(|(k, _)| *k != var.name);
        env.push((var.name.clone(), value));
    }
    // One network namespace for every pod: a listen address is the pod's own.
    if let Some((name, default_port)) = image.listen_env {
        let port = env
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()))
            .unwrap_or(default_port);
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), format!("{}:{port}", p.ip)));
    }
    Ok(env)
}

/// Who a container runs as, from its and its pod's securityContext.
struct Identity {
    /// None: root (no runAsUser), and nothing is switched.
    uid: Option<libc::uid_t>,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// `runAsUser`/`runAsGroup` (the container's, else the pod's; the group defaults to 0 as with an
/// image without a USER group), `fsGroup` and `supplementalGroups` as supplementary groups;
/// `runAsNonRoot` refuses to start a container that would run as root, with the kubelet's reason.
fn identity(pod: &Pod, c: &Container) -> Result<Identity, Failure> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, Failure> {
        v.map(|v| u32::try_from(v).map_err(|_| ("CreateContainerConfigError".to_string(), format!("{what} {v} is not a valid id"))))
            .transpose()
    };
    let uid = id(sc.run_as_user.or(pod_sc.run_as_user), "runAsUser")?;
    let gid = id(sc.run_as_group.or(pod_sc.run_as_group), "runAsGroup")?.unwrap_or(0);
    if sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid.unwrap_or(0) == 0 {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        return Err((
            "CreateContainerConfigError".into(),
            format!("container has runAsNonRoot and image will run as root (pod: \"{name}\", container: {})", c.name),
        ));
    }
    let mut groups = vec![gid];
    groups.extend(id(pod_sc.fs_group, "fsGroup")?);
    for g in pod_sc.supplemental_groups.unwrap_or_default() {
        groups.extend(id(Some(g), "supplementalGroups")?);
    }
    groups.dedup();
    Ok(Identity { uid, gid, groups })
}

async fn start_container(p: &mut PodCtx, pod: &Pod, c: &Container, restarts: i32) -> Result<std::process::Child, Failure> {
    let image_name = c.image.clone().unwrap_or_default();
    let Some(image) = p.ctx.config.images.iter().find(|i| i.matches(&image_name)).cloned() else {
        return Err(("ErrImagePull".into(), format!("the process kubelet has no binary for the image {image_name}")));
    };
    let identity = identity(pod, c)?;
    let env = container_env(p, pod, c, &image).await?;
    // The command replaces the image's entrypoint: its first word names the entrypoint (the
    // mapped binary); the rest and the args follow.
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default().into_iter().skip(1).collect();
    argv.extend(c.args.clone().unwrap_or_default().iter().map(|a| expand(a, &env)));

    // Mounts: each volume mount, then the termination-message file.
    let volumes: HashMap<String, Volume> =
        pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default().into_iter().map(|v| (v.name.clone(), v)).collect();
    let mut mounts: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    for m in c.volume_mounts.clone().unwrap_or_default() {
        let Some(volume) = volumes.get(&m.name) else {
            return Err(("CreateContainerConfigError".into(), format!("no volume {}", m.name)));
        };
        let mut source = match &volume.host_path {
            Some(h) => PathBuf::from(&h.path),
            None => p.dir.join("volumes").join(&m.name),
        };
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
        }
        let target = PathBuf::from(&m.mount_path);
        mount_point(&target, source.is_dir()).map_err(|e| ("RunContainerError".to_string(), e))?;
        mounts.push((source, target, m.read_only == Some(true)));
    }
    let termination = p.dir.join("termination");
    let _ = std::fs::create_dir_all(&termination);
    let message_file = termination.join(&c.name);
    std::fs::write(&message_file, b"").map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
    {
        // Writable by whatever user the container runs as (the kubelet makes it 0666 too).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&message_file, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
    }
    let message_path = PathBuf::from(c.termination_message_path.as_deref().unwrap_or("/dev/termination-log"));
    if mount_point(&message_path, false).is_ok() {
        mounts.push((message_file, message_path, false));
    }
    // A mount over a folder holding the kubelet's own files (an emptyDir at /tmp) comes last,
    // after the sources under it are mounted.
    let root = p.ctx.config.root.clone();
    mounts.sort_by_key(|(_, target, _)| root.starts_with(target));

    let logs = p.ctx.config.root.join("logs").join(&p.uid);
    let _ = std::fs::create_dir_all(&logs);
    let log = std::fs::File::create(log_path(&p.ctx.config.root, &p.uid, &c.name, restarts))
        .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
    let log2 = log.try_clone().map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;

    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| ("RunContainerError".to_string(), e.to_string()));
    let mut cmounts = Vec::new();
    for (source, target, ro) in &mounts {
        cmounts.push((cstr(source)?, cstr(target)?, *ro));
    }
    let parent = std::process::id() as libc::pid_t;
    // The binary is opened here and executed through its descriptor: a volume mounted over a
    // folder holding it (an emptyDir at /tmp while the checkout lives under /tmp, as in CI's
    // clean clone) would otherwise hide it in the container's mount namespace.
    let program = std::fs::File::open(&image.binary)
        .map_err(|e| ("RunContainerError".to_string(), format!("opening {}: {e}", image.binary.display())))?;
    let program_fd = std::os::fd::AsRawFd::as_raw_fd(&program);
    let mut command = std::process::Command::new(format!("/proc/self/fd/{program_fd}"));
    command
        .args(&argv)
        .env_clear()
        .envs(env)
        .current_dir(c.working_dir.as_deref().unwrap_or("/"))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    // SAFETY: only async-signal-safe system calls on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            use std::io::Error;
            // Dies with the kubelet's thread (and so with the test process); set again after a
            // change of user below, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            // Kept open across exec (it is how the program is found; see above).
            if libc::fcntl(program_fd, libc::F_SETFD, 0) != 0 {
                return Err(Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(Error::last_os_error());
            }
            let none = c"none".as_ptr();
            if libc::mount(none, c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(Error::last_os_error());
            }
            for (source, target, ro) in &cmounts {
                if libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                    return Err(Error::last_os_error());
                }
                if *ro
                    && libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(Error::last_os_error());
                }
            }
            // The pod's user last (the mounts need root): supplementary groups (fsGroup,
            // supplementalGroups), group, user. std's own uid/gid would switch before these mounts.
            if let Some(uid) = identity.uid {
                if libc::setgroups(identity.groups.len(), identity.groups.as_ptr()) != 0
                    || libc::setgid(identity.gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(137);
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| ("RunContainerError".to_string(), format!("starting {}: {e}", image.binary.display())));
    drop(program);
    child
}

/// A mount target must exist: a missing one is created on the host, empty (a folder, or a
/// file for a file mount), as a container runtime creates it in the image's root.
fn mount_point(target: &Path, dir: bool) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    if dir {
        std::fs::create_dir_all(target).map_err(|e| format!("mount point {}: {e}", target.display()))
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("mount point {}: {e}", parent.display()))?;
        }
        std::fs::write(target, b"").map_err(|e| format!("mount point {}: {e}", target.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Volumes

/// Materialises every volume; refreshes Secret, ConfigMap, downward API and projected ones
/// (atomically). Err: why a volume cannot be set up (the pod waits in ContainerCreating).
async fn sync_volumes(p: &mut PodCtx, pod: &Pod) -> Result<(), String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    for v in volumes {
        let dir = p.dir.join("volumes").join(&v.name);
        if v.empty_dir.is_some() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            // World-writable, as the kubelet makes an emptyDir: the container may run as any user.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())?;
            continue;
        }
        if v.host_path.is_some() {
            continue;
        }
        let files = volume_files(p, pod, &v).await?;
        if p.volumes.get(&v.name) != Some(&files) {
            let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()?.fs_group).and_then(|g| u32::try_from(g).ok());
            write_atomic(&dir, &files, fs_group).map_err(|e| format!("volume {}: {e}", v.name))?;
            p.volumes.insert(v.name.clone(), files);
        }
    }
    Ok(())
}

type Files = Vec<(String, Vec<u8>, u32)>;

fn pick(
    data: BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    mode: u32,
    optional: bool,
    what: &str,
) -> Result<Files, String> {
    let mode = |m: Option<i32>| m.and_then(|m| u32::try_from(m).ok()).unwrap_or(mode);
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, mode(None))).collect()),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => files.push((item.path.clone(), v.clone(), mode(item.mode))),
                    None if optional => {}
                    None => return Err(format!("{what}: no key {}", item.key)),
                }
            }
            Ok(files)
        }
    }
}

async fn volume_files(p: &mut PodCtx, pod: &Pod, v: &Volume) -> Result<Files, String> {
    let default_mode = |m: Option<i32>| m.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644);
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional == Some(true);
        return match get_secret(p, &name).await? {
            Some(secret) => pick(secret_data(&secret), &s.items, default_mode(s.default_mode), optional, &format!("secret {name}")),
            None if optional => Ok(Vec::new()),
            None => Err(format!("MountVolume.SetUp failed for volume \"{}\": secret \"{name}\" not found", v.name)),
        };
    }
    if let Some(c) = &v.config_map {
        let name = c.name.clone();
        let optional = c.optional == Some(true);
        return match get_config_map(p, &name).await? {
            Some(cm) => pick(config_map_data(&cm), &c.items, default_mode(c.default_mode), optional, &format!("configmap {name}")),
            None if optional => Ok(Vec::new()),
            None => Err(format!("MountVolume.SetUp failed for volume \"{}\": configmap \"{name}\" not found", v.name)),
        };
    }
    if let Some(d) = &v.downward_api {
        let mut files = Vec::new();
        for item in d.items.clone().unwrap_or_default() {
            let Some(f) = &item.field_ref else { return Err("resourceFieldRef is not supported by the process kubelet".into()) };
            files.push((item.path.clone(), field(p, pod, &f.field_path)?.into_bytes(), default_mode(item.mode.or(d.default_mode))));
        }
        return Ok(files);
    }
    if let Some(projected) = &v.projected {
        let mode = default_mode(projected.default_mode);
        let mut files = Vec::new();
        for source in projected.sources.clone().unwrap_or_default() {
            if let Some(s) = &source.secret {
                let optional = s.optional == Some(true);
                match get_secret(p, &s.name).await? {
                    Some(secret) => files.extend(pick(secret_data(&secret), &s.items, mode, optional, &format!("secret {}", s.name))?),
                    None if optional => {}
                    None => return Err(format!("MountVolume.SetUp failed for volume \"{}\": secret \"{}\" not found", v.name, s.name)),
                }
            }
            if let Some(c) = &source.config_map {
                let optional = c.optional == Some(true);
                match get_config_map(p, &c.name).await? {
                    Some(cm) => files.extend(pick(config_map_data(&cm), &c.items, mode, optional, &format!("configmap {}", c.name))?),
                    None if optional => {}
                    None => return Err(format!("MountVolume.SetUp failed for volume \"{}\": configmap \"{}\" not found", v.name, c.name)),
                }
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.clone().unwrap_or_default() {
                    let Some(f) = &item.field_ref else { return Err("resourceFieldRef is not supported by the process kubelet".into()) };
                    files.push((
                        item.path.clone(),
                        field(p, pod, &f.field_path)?.into_bytes(),
                        item.mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(mode),
                    ));
                }
            }
            if let Some(t) = &source.service_account_token {
                let token =
                    service_account_token(p, pod, t.audience.clone().unwrap_or_default(), t.expiration_seconds.unwrap_or(3600)).await?;
                files.push((t.path.clone(), token.into_bytes(), mode));
            }
        }
        return Ok(files);
    }
    Err(format!("volume {}: this kind of volume is not supported by the process kubelet", v.name))
}

/// A token of the pod's ServiceAccount bound to the pod (TokenRequest), renewed at 80 % of its
/// lifetime as the kubelet does.
async fn service_account_token(p: &mut PodCtx, pod: &Pod, audience: String, expiration: i64) -> Result<String, String> {
    let key = (audience.clone(), expiration);
    if let Some((token, refresh)) = p.tokens.get(&key)
        && Instant::now() < *refresh
    {
        return Ok(token.clone());
    }
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let audiences: Vec<String> = if audience.is_empty() { Vec::new() } else { vec![audience] };
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": audiences, "expirationSeconds": expiration,
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": p.name, "uid": p.uid}},
    });
    let answer: Value = Api::<ServiceAccount>::namespaced(p.ctx.client.clone(), &p.ns)
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("TokenRequest for {}/{sa}: {e}", p.ns))?;
    let token = answer.pointer("/status/token").and_then(Value::as_str).ok_or("TokenRequest: no token")?.to_string();
    let lifetime = Duration::from_secs(u64::try_from(expiration).unwrap_or(3600));
    p.tokens.insert(key, (token.clone(), Instant::now() + lifetime.mul_f64(0.8)));
    Ok(token)
}

/// The kubelet's atomic writer: the files go into a new `..<timestamp>` folder, the `..data`
/// symlink is renamed onto it in one step, and each top-level name is a symlink through
/// `..data`; a reader sees the old set or the new one, never a mix.
fn write_atomic(dir: &Path, files: &Files, fs_group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp =
        format!("..{}_{}", jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f"), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let new = dir.join(&stamp);
    std::fs::create_dir(&new)?;
    for (path, bytes, mode) in files {
        let file = new.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        // With an fsGroup the files belong to that group and are readable by it (the kubelet's
        // SetVolumeOwnership: mode | 0440 for these read-only volumes).
        let mode = match fs_group {
            Some(gid) => {
                std::os::unix::fs::chown(&file, None, Some(gid))?;
                *mode | 0o440
            }
            None => *mode,
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    let top: std::collections::BTreeSet<String> =
        files.iter().map(|(path, _, _)| path.split('/').next().unwrap_or(path).to_string()).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}
