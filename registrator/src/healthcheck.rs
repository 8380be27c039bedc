//! `registrator healthcheck`: checks that the two things registrator depends on answer — the
//! Docker Engine (ping) and the registry's etcd cluster (status) — with the same options and
//! environment the running instance uses, for Docker's `HEALTHCHECK`.

use std::path::Path;

use registrator::Config;

/// The command line the check is configured from: the arguments after `healthcheck`, or, when
/// there are none, those of PID 1 if PID 1 is this same program (the container's entrypoint),
/// so that `HEALTHCHECK CMD ["/bin/registrator", "healthcheck"]` checks the registry URI the
/// instance was started with. The environment is the container's in both cases.
pub(crate) fn arguments(argv: &[String], pid1_cmdline: Option<&[u8]>) -> Vec<String> {
    let program = argv.first().cloned().unwrap_or_default();
    let rest: Vec<String> = argv.iter().skip(2).cloned().collect();
    if !rest.is_empty() {
        return std::iter::once(program).chain(rest).collect();
    }
    let pid1: Vec<String> = pid1_cmdline
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    let same_program = pid1.first().is_some_and(|first| {
        Path::new(first).file_name() == Path::new(&program).file_name()
            && pid1.get(1).map(String::as_str) != Some("healthcheck")
    });
    if same_program {
        std::iter::once(program)
            .chain(pid1.into_iter().skip(1))
            .collect()
    } else {
        vec![program]
    }
}

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

    /// argv, PID 1's command line, the arguments the check parses.
    type Case = (
        &'static [&'static str],
        Option<&'static [u8]>,
        &'static [&'static str],
    );

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
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
            .into_config(Some("unix:///var/run/docker.sock"))
            .unwrap()
    }

    #[test]
    fn arguments_come_from_the_command_line_or_from_pid_1() {
        let cases: &[Case] = &[
            (
                &["/bin/registrator", "healthcheck", "etcd://127.0.0.1:2379/x"],
                Some(b"/bin/registrator\0-ttl\x0040\0skydns2://etcd:2379/a.b\0"),
                &["/bin/registrator", "etcd://127.0.0.1:2379/x"],
            ),
            (
                &["/bin/registrator", "healthcheck"],
                Some(b"/bin/registrator\0-ttl\x0040\0skydns2://etcd:2379/a.b\0"),
                &["/bin/registrator", "-ttl", "40", "skydns2://etcd:2379/a.b"],
            ),
            (
                &["/bin/registrator", "healthcheck"],
                Some(b"/sbin/init\0"),
                &["/bin/registrator"],
            ),
            (&["registrator", "healthcheck"], None, &["registrator"]),
        ];
        for (argv, pid1, expected) in cases {
            assert_eq!(
                arguments(&strings(argv), *pid1),
                strings(expected),
                "{argv:?} with PID 1 {pid1:?}"
            );
        }
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
            .into_config(Some("unix:///nonexistent/docker.sock"))
            .unwrap();
        let error = check(&config).await.unwrap_err();
        assert!(error.contains("Docker"), "{error}");
    }
}
