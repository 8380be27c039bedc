//! The images `docker/build-images.sh` builds: the script runs (a no-op when nothing changed),
//! each image carries the crate version, stays under 10 MB, and its Docker `HEALTHCHECK` (the
//! binary's `healthcheck` subcommand) turns a running container healthy — or fails when the
//! thing it checks is not there. Containers run on a Docker network this test creates; nothing
//! is pulled.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::time::Duration;

use harness::images::{build_images, docker_cli as docker, docker_cli_ok as docker_ok};
use harness::wait_until;

const WAIT: Duration = Duration::from_secs(60);
const VERSION: &str = env!("CARGO_PKG_VERSION");
const COMPONENTS: [&str; 3] = ["registrator", "skydns", "logspout"];
const MAX_SIZE: u64 = 10_000_000;

/// A Docker network and the containers started on it, removed on drop.
struct Stack {
    network: String,
    containers: Vec<String>,
}

impl Stack {
    async fn new(prefix: &str) -> Self {
        let network = format!("{prefix}-{}", std::process::id());
        let _ = docker(&["network", "rm", &network]).await;
        docker_ok(&["network", "create", &network]).await;
        Self {
            network,
            containers: Vec::new(),
        }
    }

    /// `docker run -d` on the network with a fast health check interval; returns the name.
    async fn run(&mut self, name: &str, options: &[&str], image: &str, args: &[&str]) -> String {
        let name = format!("{}-{name}", self.network);
        let _ = docker(&["rm", "-f", &name]).await;
        let mut command = vec![
            "run",
            "-d",
            "--pull",
            "never",
            "--name",
            &name,
            "--network",
            &self.network,
            "--health-interval",
            "1s",
            "--health-start-period",
            "1s",
        ];
        command.extend_from_slice(options);
        command.push(image);
        command.extend_from_slice(args);
        docker_ok(&command).await;
        self.containers.push(name.clone());
        name
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", container])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

async fn health(container: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
        container,
    ])
    .await
}

async fn wait_healthy(container: &str) {
    wait_until(&format!("{container} to be healthy"), WAIT, || async {
        (health(container).await == "healthy").then_some(())
    })
    .await;
}

#[tokio::test]
async fn images_are_tagged_small_and_print_their_version() {
    build_images();
    for component in COMPONENTS {
        let versioned = format!("{component}:{VERSION}");
        let id = docker_ok(&["image", "inspect", "-f", "{{.Id}}", &versioned]).await;
        let latest = docker_ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("{component}:latest"),
        ])
        .await;
        assert_eq!(id, latest, "{component}: latest is not {versioned}");

        let size: u64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &versioned])
            .await
            .parse()
            .unwrap();
        println!("{versioned}: {size} bytes");
        assert!(size < MAX_SIZE, "{versioned} is {size} bytes");

        let output = docker(&["run", "--rm", "--pull", "never", &versioned, "--version"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{versioned} --version: {output:?}");
        assert!(
            stdout.contains(VERSION),
            "{versioned} --version printed {stdout:?}"
        );

        let user = docker_ok(&["image", "inspect", "-f", "{{.Config.User}}", &versioned]).await;
        let expected_user = if component == "skydns" {
            "65534:65534"
        } else {
            ""
        };
        assert_eq!(user, expected_user, "{versioned} user");
    }
    let etcd = docker_ok(&["image", "inspect", "-f", "{{.Size}}", "etcd:latest"]).await;
    println!("etcd:latest: {etcd} bytes");
}

#[tokio::test]
async fn healthchecks_pass_against_running_containers_and_fail_without_their_target() {
    build_images();
    let mut stack = Stack::new("harness-images").await;
    let etcd = stack
        .run(
            "etcd",
            &[],
            "etcd:latest",
            &[
                "--listen-client-urls",
                "http://0.0.0.0:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
            ],
        )
        .await;
    wait_healthy(&etcd).await;
    let etcd_url = format!("http://{etcd}:2379");

    let skydns = stack
        .run(
            "skydns",
            &[],
            &format!("skydns:{VERSION}"),
            &[
                "-machines",
                &etcd_url,
                "-addr",
                "0.0.0.0:53",
                "-domain",
                "example.local.",
                "-no-rec",
            ],
        )
        .await;
    let registrator = stack
        .run(
            "registrator",
            &["-v", "/var/run/docker.sock:/tmp/docker.sock"],
            &format!("registrator:{VERSION}"),
            &[&format!("skydns2://{etcd}:2379/staging.example.local")],
        )
        .await;
    let logspout = stack
        .run(
            "logspout",
            &["-v", "/var/run/docker.sock:/tmp/docker.sock"],
            &format!("logspout:{VERSION}"),
            &[],
        )
        .await;
    for container in [&skydns, &registrator, &logspout] {
        wait_healthy(container).await;
    }

    // The subcommand itself, with the flags of PID 1 and with explicit ones.
    let cases: [(&str, Vec<&str>, bool); 5] = [
        (&skydns, vec!["/bin/skydns", "healthcheck"], true),
        (
            &skydns,
            vec!["/bin/skydns", "healthcheck", "-addr", "127.0.0.1:5399"],
            false,
        ),
        (&registrator, vec!["/bin/registrator", "healthcheck"], true),
        (
            &registrator,
            vec![
                "/bin/registrator",
                "healthcheck",
                "skydns2://127.0.0.1:2399/x.local",
            ],
            false,
        ),
        (&logspout, vec!["/bin/logspout", "healthcheck"], true),
    ];
    for (container, command, healthy) in cases {
        let mut args = vec!["exec", container];
        args.extend(command.iter().copied());
        let output = docker(&args).await;
        assert_eq!(
            output.status.success(),
            healthy,
            "{command:?} in {container}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Without etcd, registrator's health check fails and Docker marks it unhealthy.
    docker_ok(&["stop", "-t", "5", &etcd]).await;
    wait_until("registrator to turn unhealthy", WAIT, || async {
        (health(&registrator).await == "unhealthy").then_some(())
    })
    .await;
}
