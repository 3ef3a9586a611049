//! Writes the CustomResourceDefinitions generated from the Rust types into `crds/yaml/` and
//! the chart's `crds/` folder (`crdgen`), or checks that the committed files match
//! (`crdgen --check`, what CI's drift test does too).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use botfleet_crds::crd_files;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = [root.join("crds/yaml"), root.join("charts/botfleet/crds")];
    let files = match crd_files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("crdgen: cannot render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = Vec::new();
    for dir in &targets {
        for (name, yaml) in &files {
            let path = dir.join(name);
            if check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                    stale.push(path);
                }
            } else if let Err(e) = write(&path, yaml) {
                eprintln!("crdgen: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if !stale.is_empty() {
        for p in &stale {
            eprintln!("crdgen: {} differs from the Rust types; run `cargo run -p botfleet-crds --bin crdgen`", p.display());
        }
        return ExitCode::FAILURE;
    }
    if !check {
        println!("wrote {} CRDs to {}", files.len(), targets.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(" and "));
    }
    ExitCode::SUCCESS
}

fn write(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, content)
}
