//! The project's images in tests: `docker/build-images.sh` run once per test process, scripts of
//! `docker/` run without the variables `cargo test` sets, and the docker CLI.

use std::process::{Command, Output};
use std::sync::Once;

/// The workspace's `docker/` directory.
pub const DOCKER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker");

/// Removes from `command` the variables `cargo test` sets for the test process: a script whose
/// cargo saw them would rebuild everything instead of nothing.
pub fn without_cargo_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = (name.starts_with("CARGO") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name.starts_with("RUSTDOC")
            || name == "OUT_DIR"
            || name == "LD_LIBRARY_PATH";
        if set_by_cargo {
            command.env_remove(&*name);
        }
    }
    command
}

/// Builds the images (`docker/build-images.sh`, idempotent) once per test process; panics with
/// the script's output if it fails.
pub fn build_images() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut command = Command::new("bash");
        command.arg(format!("{DOCKER_DIR}/build-images.sh"));
        let output = without_cargo_env(&mut command)
            .output()
            .expect("run build-images.sh");
        assert!(
            output.status.success(),
            "build-images.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// The docker CLI with these arguments.
pub async fn docker_cli(args: &[&str]) -> Output {
    tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("run the docker CLI")
}

/// The docker CLI with these arguments, which must succeed; its stdout without trailing
/// whitespace (stderr is kept apart, so `docker logs` gives the container's stdout only).
pub async fn docker_cli_ok(args: &[&str]) -> String {
    let output = docker_cli(args).await;
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}
