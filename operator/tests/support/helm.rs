//! `helm` against the test control plane: the real Helm engine (Helm v4's library through
//! helm-python-sdk), driven by `charts/tests/helm_release.py` and run with
//! `$BOTFLEET_CHART_PYTHON` (the venv `.ci/run` prepares). Used by `tests/helm.rs` and
//! `tests/kubelet.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::controlplane::{ControlPlane, repo};

/// The Python of the chart tools, or None (with the reason printed) where they are missing and
/// CI is not set.
pub fn chart_python() -> Option<PathBuf> {
    let python = std::env::var_os("BOTFLEET_CHART_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv-chart/bin/python"));
    if python.exists() {
        return Some(python);
    }
    let setup = "python3 -m venv .venv-chart && .venv-chart/bin/pip install -r charts/tests/requirements.txt";
    assert!(std::env::var_os("CI").is_none(), "the chart tools are required in CI ({} is missing): {setup}", python.display());
    eprintln!("SKIPPED: no chart tools ({}); create them with: {setup}", python.display());
    None
}

/// `helm` against the control plane as its admin, through charts/tests/helm_release.py.
pub struct Helm {
    python: PathBuf,
    pub kubeconfig: PathBuf,
    pub namespace: String,
}

impl Helm {
    pub fn new(python: PathBuf, plane: &ControlPlane, namespace: &str) -> Self {
        Self { python, kubeconfig: plane.dir.join("admin.kubeconfig"), namespace: namespace.to_string() }
    }

    /// One action; Ok(the release summary) or Err(Helm's refusal).
    pub fn run(&self, args: &[&str]) -> Result<Value, String> {
        let out = tokio::task::block_in_place(|| {
            Command::new(&self.python)
                .arg(repo().join("charts/tests/helm_release.py"))
                .args(["--kubeconfig".as_ref(), self.kubeconfig.as_os_str(), "--namespace".as_ref(), self.namespace.as_ref()])
                .args(args)
                .current_dir(repo())
                .output()
                .expect("the chart tools' python runs")
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("helm_release.py {args:?} printed no JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        });
        match answer["ok"].as_bool() {
            Some(true) => Ok(answer["release"].clone()),
            _ => Err(format!("{}: {}", answer["kind"].as_str().unwrap_or("?"), answer["error"].as_str().unwrap_or("?"))),
        }
    }

    pub fn install(&self, release: &str, chart: &Path, values: &Value) -> Value {
        let chart = chart.to_string_lossy();
        self.run(&["install", release, &chart, "--values", &values.to_string()]).unwrap_or_else(|e| panic!("helm install: {e}"))
    }

    /// `helm upgrade RELEASE CHART <reuse> --set …` (`reuse` e.g. "--reset-then-reuse-values").
    pub fn upgrade(&self, release: &str, chart: &Path, reuse: &str, values: &Value) -> Result<Value, String> {
        let chart = chart.to_string_lossy();
        self.run(&["upgrade", release, &chart, reuse, "--values", &values.to_string()])
    }

    pub fn status(&self, release: &str) -> Value {
        self.run(&["status", release]).unwrap_or_else(|e| panic!("helm status: {e}"))
    }

    pub fn uninstall(&self, release: &str) -> Value {
        self.run(&["uninstall", release]).unwrap_or_else(|e| panic!("helm uninstall: {e}"))
    }
}

/// The objects of a release's rendered manifest.
pub fn manifest_objects(release: &Value) -> Vec<Value> {
    let manifest = release["manifest"].as_str().expect("the release carries its manifest");
    serde_yaml::Deserializer::from_str(manifest)
        .map(|doc| serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("yaml")).expect("json"))
        .filter(|v: &Value| v.is_object())
        .collect()
}
