//! The container images cannot be built here (no Docker), so their Dockerfiles are checked as
//! text: multi-stage, the binary built by scripts/build-release.sh (the one build CI shares),
//! a final stage that runs as a non-root numeric user, and the runtime built without the test
//! bed's default features. docs/kind-e2e.sh must build from these files, not its own copies.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The instructions of a Dockerfile (comments dropped, continuations joined).
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn check_image(dockerfile: &str, target: &str, binary: &str) {
    let all = instructions(&read(dockerfile));
    let stages: Vec<usize> = all.iter().enumerate().filter(|(_, i)| i.starts_with("FROM ")).map(|(n, _)| n).collect();
    assert!(stages.len() >= 2, "{dockerfile}: multi-stage (a builder and a minimal final image)");
    let (build, last) = (&all[stages[0]..stages[stages.len() - 1]], &all[stages[stages.len() - 1]..]);
    assert!(
        build.iter().any(|i| i.starts_with("RUN ") && i.contains(&format!("scripts/build-release.sh {target}"))),
        "{dockerfile}: the binary is built by scripts/build-release.sh {target}"
    );
    assert!(!build.iter().any(|i| i.contains("cargo build")), "{dockerfile}: no cargo build of its own, only the shared script");
    let user =
        last.iter().rev().find_map(|i| i.strip_prefix("USER ")).unwrap_or_else(|| panic!("{dockerfile}: no USER in the final stage"));
    let uid: u32 =
        user.split(':').next().and_then(|u| u.trim().parse().ok()).unwrap_or_else(|| panic!("{dockerfile}: USER {user} is not numeric"));
    assert_ne!(uid, 0, "{dockerfile}: runs as non-root");
    assert!(
        last.iter().any(|i| i.starts_with("ENTRYPOINT") && i.contains(&format!("\"/{binary}\""))),
        "{dockerfile}: the entrypoint is /{binary}"
    );
    assert!(
        !last.iter().any(|i| i.starts_with("RUN ")),
        "{dockerfile}: the final image runs nothing at build time (no shell in distroless)"
    );
}

#[test]
fn the_operator_image_is_built_by_the_shared_script_and_runs_as_non_root() {
    check_image("docker/operator.Dockerfile", "operator", "operator");
}

#[test]
fn the_runtime_image_is_built_by_the_shared_script_and_runs_as_non_root() {
    check_image("docker/runtime.Dockerfile", "runtime", "bot-runtime");
}

#[test]
fn the_shared_build_script_builds_the_runtime_without_the_test_bed_and_is_what_kind_e2e_uses() {
    let script = read("scripts/build-release.sh");
    let runtime = script.lines().find(|l| l.trim_start().starts_with("runtime)")).expect("a runtime case");
    assert!(runtime.contains("-p bot-runtime") && runtime.contains("--no-default-features"), "{runtime}");
    assert!(script.contains("--locked"), "the committed Cargo.lock is what ships");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(repo().join("scripts/build-release.sh")).expect("script").permissions().mode();
        assert!(mode & 0o111 != 0, "scripts/build-release.sh is executable (the Dockerfiles run it directly)");
    }
    let kind = read("docs/kind-e2e.sh");
    assert!(
        kind.contains("docker/operator.Dockerfile") && kind.contains("docker/runtime.Dockerfile"),
        "kind-e2e.sh builds the repository's Dockerfiles"
    );
    assert!(!kind.contains("<<'DOCKERFILE'"), "kind-e2e.sh writes no Dockerfile of its own");
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"), ".dockerignore keeps target/ out of the build context");
}
