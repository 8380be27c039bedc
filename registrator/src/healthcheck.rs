//! `registrator healthcheck`: checks that the two things registrator depends on answer — the
//! Docker Engine (ping) and the registry's etcd cluster (status) — with the same options and
//! environment the running instance uses, for Docker's `HEALTHCHECK`.

use registrator::Config;

/// Pings Docker, then asks etcd for its status; returns a one-line summary, or the first failure.
pub(crate) async fn check(config: &Config) -> Result<String, String> {
    config
        .docker
        .connect()
        .await
        .map_err(|e| format!("Docker does not answer: {e}"))?;
    config
        .registry
        .etcd
        .connect()
        .await
        .map_err(|e| format!("etcd does not answer: {e}"))?;
    Ok(format!(
        "Docker and etcd ({}) answer",
        config.registry.etcd.endpoints().join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::{CommandFactory, FromArgMatches};
    use harness::EtcdServer;
    use registrator::Options;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// An environment with only `DOCKER_HOST` set.
    fn docker_host(value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| (name == "DOCKER_HOST").then(|| value.to_owned())
    }

    fn config(args: &[&str]) -> Config {
        let command = Options::command();
        let matches = command
            .try_get_matches_from(common::cli::go_style_args(
                &Options::command(),
                strings(args),
            ))
            .unwrap();
        Options::from_arg_matches(&matches)
            .unwrap()
            .into_config(docker_host("unix:///var/run/docker.sock"))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthy_while_docker_and_etcd_answer() {
        let etcd = EtcdServer::start().await;
        let uri = format!(
            "skydns2://{}/staging.example.local",
            etcd.endpoint().trim_start_matches("http://")
        );
        let config = config(&["registrator", &uri]);
        let summary = check(&config).await.unwrap();
        assert!(summary.contains("answer"), "{summary}");

        drop(etcd);
        let error = check(&config).await.unwrap_err();
        assert!(error.contains("etcd"), "{error}");
    }

    #[tokio::test]
    async fn unhealthy_without_docker() {
        let etcd = EtcdServer::start().await;
        let uri = format!(
            "etcd://{}/services",
            etcd.endpoint().trim_start_matches("http://")
        );
        let command = Options::command();
        let matches = command
            .try_get_matches_from(strings(&["registrator", &uri]))
            .unwrap();
        let config = Options::from_arg_matches(&matches)
            .unwrap()
            .into_config(docker_host("unix:///nonexistent/docker.sock"))
            .unwrap();
        let error = check(&config).await.unwrap_err();
        assert!(error.contains("Docker"), "{error}");
    }
}
