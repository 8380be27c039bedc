//! The derivation rules, case by case, checked against the records the real binary writes for
//! real containers (etcd:// backend, whose keys keep the raw service IDs).
//!
//! Every registrator of the suite registers every container of the Docker engine, so each case
//! runs from an image tagged for it alone and looks only at records of its own names; a
//! sentinel container started after the case's container proves that it has been handled (the
//! events of one engine are handled in order).

mod support;

use std::collections::BTreeMap;

use harness::{ContainerSpec, EtcdServer, TestContainer, TestDocker, wait_until};
use support::{Registrator, WAIT, records, tag_test_image};

#[derive(Debug, Clone, Copy)]
enum Ip {
    /// The published binding's address (the harness publishes on 127.0.0.1).
    Binding,
    /// The container's own address on the default bridge.
    Container,
    Literal(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Port {
    /// The host port Docker picked for this container port (`80/tcp`).
    Published(&'static str),
    /// This number as written.
    Exposed(u16),
}

struct Case {
    what: &'static str,
    flags: &'static [&'static str],
    /// The container, given a spec running the case's own image and that image's name.
    container: fn(ContainerSpec, &str) -> ContainerSpec,
    /// (name, id) with `{image}`, `{host}` and `{container}` filled in; IP; port.
    expected: &'static [(&'static str, &'static str, Ip, Port)],
}

const DEFAULT_ID_80: &str = "{host}:{container}:80";
const DEFAULT_ID_81: &str = "{host}:{container}:81";

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "one published port: the image name, the default ID",
            flags: &[],
            container: |c, _| c.publish(80),
            expected: &[(
                "{image}",
                DEFAULT_ID_80,
                Ip::Binding,
                Port::Published("80/tcp"),
            )],
        },
        Case {
            what: "two published ports: -<port> suffixes",
            flags: &[],
            container: |c, _| c.publish(80).publish(81),
            expected: &[
                (
                    "{image}-80",
                    DEFAULT_ID_80,
                    Ip::Binding,
                    Port::Published("80/tcp"),
                ),
                (
                    "{image}-81",
                    DEFAULT_ID_81,
                    Ip::Binding,
                    Port::Published("81/tcp"),
                ),
            ],
        },
        Case {
            what: "an exposed, unpublished port is skipped and does not make a group",
            flags: &[],
            container: |c, _| c.publish(80).expose(81),
            expected: &[(
                "{image}",
                DEFAULT_ID_80,
                Ip::Binding,
                Port::Published("80/tcp"),
            )],
        },
        Case {
            what: "SERVICE_NAME gets the suffix, SERVICE_<port>_NAME does not",
            flags: &[],
            container: |c, image| {
                c.publish(80)
                    .publish(81)
                    .env("SERVICE_NAME", &format!("{image}-api"))
                    .env("SERVICE_81_NAME", &format!("{image}-admin"))
            },
            expected: &[
                (
                    "{image}-api-80",
                    DEFAULT_ID_80,
                    Ip::Binding,
                    Port::Published("80/tcp"),
                ),
                (
                    "{image}-admin",
                    DEFAULT_ID_81,
                    Ip::Binding,
                    Port::Published("81/tcp"),
                ),
            ],
        },
        Case {
            what: "UDP: :udp ends the default ID",
            flags: &[],
            container: |c, _| c.publish_udp(53),
            expected: &[(
                "{image}",
                "{host}:{container}:53:udp",
                Ip::Binding,
                Port::Published("53/udp"),
            )],
        },
        Case {
            what: "514 and 514/udp are two services of one name",
            flags: &[],
            container: |c, _| c.publish(514).publish_udp(514),
            expected: &[
                (
                    "{image}-514",
                    "{host}:{container}:514",
                    Ip::Binding,
                    Port::Published("514/tcp"),
                ),
                (
                    "{image}-514",
                    "{host}:{container}:514:udp",
                    Ip::Binding,
                    Port::Published("514/udp"),
                ),
            ],
        },
        Case {
            what: "labels beat env vars; SERVICE_ID replaces the default ID",
            flags: &[],
            container: |c, image| {
                c.publish(80)
                    .env("SERVICE_NAME", &format!("{image}-env"))
                    .label("SERVICE_NAME", &format!("{image}-label"))
                    .env("SERVICE_ID", "explicit-id")
            },
            expected: &[(
                "{image}-label",
                "explicit-id",
                Ip::Binding,
                Port::Published("80/tcp"),
            )],
        },
        Case {
            what: "SERVICE_IGNORE ignores the container",
            flags: &[],
            container: |c, _| c.publish(80).label("SERVICE_IGNORE", "true"),
            expected: &[],
        },
        Case {
            what: "SERVICE_<port>_IGNORE ignores one port",
            flags: &[],
            container: |c, _| c.publish(80).publish(81).env("SERVICE_80_IGNORE", "1"),
            expected: &[(
                "{image}-81",
                DEFAULT_ID_81,
                Ip::Binding,
                Port::Published("81/tcp"),
            )],
        },
        Case {
            what: "-explicit: a container without SERVICE_NAME is not registered",
            flags: &["-explicit"],
            container: |c, _| c.publish(80),
            expected: &[],
        },
        Case {
            what: "-explicit: only the named port",
            flags: &["-explicit"],
            container: |c, image| c.publish(80).publish(81).env("SERVICE_81_NAME", image),
            expected: &[(
                "{image}",
                DEFAULT_ID_81,
                Ip::Binding,
                Port::Published("81/tcp"),
            )],
        },
        Case {
            what: "-internal: the container's IP and exposed ports, unpublished ones included",
            flags: &["-internal"],
            container: |c, _| c.publish(80).expose(81),
            expected: &[
                (
                    "{image}-80",
                    DEFAULT_ID_80,
                    Ip::Container,
                    Port::Exposed(80),
                ),
                (
                    "{image}-81",
                    DEFAULT_ID_81,
                    Ip::Container,
                    Port::Exposed(81),
                ),
            ],
        },
        Case {
            what: "-ip overrides the binding's address",
            flags: &["-ip", "10.9.9.9"],
            container: |c, _| c.publish(80),
            expected: &[(
                "{image}",
                DEFAULT_ID_80,
                Ip::Literal("10.9.9.9"),
                Port::Published("80/tcp"),
            )],
        },
        Case {
            what: "-useIpFromLabel cuts the /prefix and beats -ip",
            flags: &["-useIpFromLabel", "service.ip", "-ip", "10.9.9.9"],
            container: |c, _| c.publish(80).label("service.ip", "10.1.2.3/24"),
            expected: &[(
                "{image}",
                DEFAULT_ID_80,
                Ip::Literal("10.1.2.3"),
                Port::Published("80/tcp"),
            )],
        },
        Case {
            what: "--net=host: an exposed port counts as published with its own number",
            flags: &["-ip", "127.0.0.1"],
            container: |c, _| c.network_mode("host").expose(18080),
            expected: &[(
                "{image}",
                "{host}:{container}:18080",
                Ip::Literal("127.0.0.1"),
                Port::Exposed(18080),
            )],
        },
        Case {
            what: "odd metadata: warnings, and the service is registered sanely",
            flags: &[],
            container: |c, _| {
                c.publish(80)
                    .env("SERVICE_81_NAME", "for-a-port-not-exposed")
                    .env("SERVICE_80_", "no-field")
                    .env("SERVICE_NAME", "")
                    .label("SERVICE_TAGS", ",,")
            },
            expected: &[(
                "{image}",
                DEFAULT_ID_80,
                Ip::Binding,
                Port::Published("80/tcp"),
            )],
        },
    ]
}

fn fill(template: &str, image: &str, container: &TestContainer) -> String {
    template
        .replace("{image}", image)
        .replace("{host}", &support::hostname())
        .replace("{container}", container.name())
}

async fn container_ip(container: &TestContainer) -> String {
    container
        .inspect()
        .await
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get("bridge").cloned())
        .and_then(|e| e.ip_address)
        .expect("the container has an address on the default bridge")
}

#[tokio::test]
async fn derivation_cases_against_real_containers() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for (index, case) in cases().into_iter().enumerate() {
        let image = format!("regcase{index}");
        tag_test_image(&format!("{image}:latest"));
        let prefix = format!("/case{index}");
        let uri = format!("etcd://{}{prefix}", etcd.host_port());
        let mut args: Vec<&str> = case.flags.to_vec();
        args.push(&uri);
        let registrator = Registrator::start(&args);
        registrator.wait_log("synced").await;

        let spec = (case.container)(ContainerSpec::idle().image(&image), &image);
        let container = docker.run(spec).await;
        let sentinel_name = format!("{image}-sentinel");
        let _sentinel = docker
            .run(
                ContainerSpec::idle()
                    .publish(80)
                    .env("SERVICE_NAME", &sentinel_name)
                    .env("SERVICE_ID", "sentinel"),
            )
            .await;
        // Its value depends on the case's flags: only its presence matters.
        let sentinel_key = format!("{prefix}/{sentinel_name}/sentinel");
        wait_until(&sentinel_key, WAIT, || {
            let mut client = client.clone();
            let key = sentinel_key.clone();
            async move { (!records(&mut client, &key).await.is_empty()).then_some(()) }
        })
        .await;

        let mut expected = BTreeMap::new();
        for (name, id, ip, port) in case.expected {
            let ip = match ip {
                Ip::Binding => "127.0.0.1".to_owned(),
                Ip::Container => container_ip(&container).await,
                Ip::Literal(ip) => (*ip).to_owned(),
            };
            let port = match port {
                Port::Published(key) => container.host_port(key).await,
                Port::Exposed(port) => *port,
            };
            expected.insert(
                format!(
                    "{prefix}/{}/{}",
                    fill(name, &image, &container),
                    fill(id, &image, &container)
                ),
                format!("{ip}:{port}"),
            );
        }
        // This case's records: those of its image's names (the sentinel aside) or its container.
        let got: BTreeMap<String, String> = records(&mut client, &format!("{prefix}/"))
            .await
            .into_iter()
            .filter(|(key, _)| {
                let mut segments = key[prefix.len() + 1..].splitn(2, '/');
                let name = segments.next().unwrap_or_default();
                let id = segments.next().unwrap_or_default();
                (name.starts_with(&image) && name != sentinel_name)
                    || id.contains(container.name())
                    || id == "explicit-id"
            })
            .collect();
        assert_eq!(got, expected, "case {index}: {}", case.what);
        drop(registrator);
        drop(container);
        support::untag_image(&format!("{image}:latest"));
    }
}
