//! Derivation cases as data: inspect JSON (the fields Docker reports that matter) plus flags in,
//! services out.

use super::*;
use serde_json::{Value, json};

fn inspect(value: Value) -> ContainerInspectResponse {
    serde_json::from_value(value).unwrap()
}

/// A running container as Docker 20.10 reports it on the default bridge.
fn bridge(image: &str, env: &[&str], labels: Value, exposed: &[&str], ports: Value) -> Value {
    let exposed: serde_json::Map<String, Value> = exposed
        .iter()
        .map(|p| ((*p).to_owned(), json!({})))
        .collect();
    json!({
        "Id": "0123456789abcdef0123456789abcdef",
        "Name": "/c1",
        "State": {"Running": true, "ExitCode": 0},
        "Config": {"Image": image, "Env": env, "Labels": labels, "ExposedPorts": exposed},
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {
            "Ports": ports,
            "Networks": {"bridge": {"IPAddress": "172.17.0.2", "GlobalIPv6Address": ""}}
        }
    })
}

fn published(host_ip: &str, host_port: &str) -> Value {
    json!([{"HostIp": host_ip, "HostPort": host_port}])
}

/// A container on five networks (network mode `backend`), exposing 80 (and 81 when an env var
/// names it), with `env`.
fn multi_network(env: &[&str]) -> Value {
    let mut exposed = json!({"80/tcp": {}});
    let mut ports = json!({"80/tcp": null});
    if env.iter().any(|e| e.starts_with("SERVICE_81_")) {
        exposed["81/tcp"] = json!({});
        ports["81/tcp"] = Value::Null;
    }
    json!({
        "Name": "/web", "Config": {"Image": "web", "Env": env, "ExposedPorts": exposed},
        "HostConfig": {"NetworkMode": "backend"},
        "NetworkSettings": {"Ports": ports, "Networks": {
            "aaa": {"IPAddress": "172.30.0.4"},
            "backend": {"IPAddress": "172.20.0.5"},
            "bridge": {"IPAddress": "172.17.0.3"},
            "overlay": {"IPAddress": "10.0.9.7", "GlobalIPv6Address": "fd00::7"},
            "v6only": {"IPAddress": "", "GlobalIPv6Address": "fd00::9"}
        }}
    })
}

fn options() -> DeriveOptions {
    DeriveOptions {
        hostname: "host1".into(),
        unspecified_ip: Some("10.0.0.9".into()),
        ..DeriveOptions::default()
    }
}

struct Case {
    what: &'static str,
    container: Value,
    network_container: Option<Value>,
    options: DeriveOptions,
    /// (name, id, ip, port)
    expected: &'static [(&'static str, &'static str, &'static str, u16)],
}

fn cases() -> Vec<Case> {
    let es_ports =
        json!({"9200/tcp": published("0.0.0.0", "9200"), "9300/tcp": published("0.0.0.0", "9300")});
    vec![
        Case {
            what: "the seed's elasticsearch with -ip",
            container: bridge(
                "elasticsearch:1.5.2",
                &["SERVICE_ID=es1"],
                json!({}),
                &["9200/tcp", "9300/tcp"],
                es_ports.clone(),
            ),
            network_container: None,
            options: DeriveOptions {
                host_ip: Some("10.0.0.5".into()),
                ..options()
            },
            expected: &[
                ("elasticsearch-9200", "es1", "10.0.0.5", 9200),
                ("elasticsearch-9300", "es1", "10.0.0.5", 9300),
            ],
        },
        Case {
            what: "0.0.0.0 becomes the host's address",
            container: bridge(
                "elasticsearch:1.5.2",
                &[],
                json!({}),
                &["9200/tcp", "9300/tcp"],
                es_ports,
            ),
            network_container: None,
            options: options(),
            expected: &[
                ("elasticsearch-9200", "host1:c1:9200", "10.0.0.9", 9200),
                ("elasticsearch-9300", "host1:c1:9300", "10.0.0.9", 9300),
            ],
        },
        Case {
            what: "one published port: no -<port> suffix; image path and tag cut",
            container: bridge(
                "gliderlabs/foobar:1.2",
                &[],
                json!({}),
                &["80/tcp", "81/tcp"],
                json!({"80/tcp": published("127.0.0.1", "32775"), "81/tcp": null}),
            ),
            network_container: None,
            options: options(),
            expected: &[("foobar", "host1:c1:80", "127.0.0.1", 32775)],
        },
        Case {
            what: "-internal: container IP and exposed ports, unpublished ones too",
            container: bridge(
                "foobar",
                &[],
                json!({}),
                &["80/tcp", "81/tcp"],
                json!({"80/tcp": published("127.0.0.1", "32775"), "81/tcp": null}),
            ),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                host_ip: Some("10.0.0.5".into()),
                ..options()
            },
            expected: &[
                ("foobar-80", "host1:c1:80", "172.17.0.2", 80),
                ("foobar-81", "host1:c1:81", "172.17.0.2", 81),
            ],
        },
        Case {
            what: "--net=host: exposed ports count as published with the same number",
            container: json!({
                "Name": "/web", "Config": {"Image": "nginx", "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}},
                "HostConfig": {"NetworkMode": "host"},
                "NetworkSettings": {"Ports": {}, "Networks": {"host": {"IPAddress": ""}}}
            }),
            network_container: None,
            options: options(),
            expected: &[
                ("nginx-80", "host1:web:80", "10.0.0.9", 80),
                ("nginx-443", "host1:web:443", "10.0.0.9", 443),
            ],
        },
        Case {
            what: "udp: :udp in the ID; 514 and 514/udp are both <image>-514",
            container: bridge(
                "rsyslog",
                &[],
                json!({}),
                &["514/tcp", "514/udp"],
                json!({"514/tcp": published("127.0.0.1", "4000"), "514/udp": published("127.0.0.1", "4001")}),
            ),
            network_container: None,
            options: options(),
            expected: &[
                ("rsyslog-514", "host1:c1:514", "127.0.0.1", 4000),
                ("rsyslog-514", "host1:c1:514:udp", "127.0.0.1", 4001),
            ],
        },
        Case {
            what: "SERVICE_NAME gets the suffix in a group, SERVICE_<port>_NAME does not",
            container: bridge(
                "x",
                &["SERVICE_NAME=api", "SERVICE_81_NAME=admin"],
                json!({}),
                &["80/tcp", "81/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080"), "81/tcp": published("127.0.0.1", "1081")}),
            ),
            network_container: None,
            options: options(),
            expected: &[
                ("api-80", "host1:c1:80", "127.0.0.1", 1080),
                ("admin", "host1:c1:81", "127.0.0.1", 1081),
            ],
        },
        Case {
            what: "SERVICE_IGNORE on the container",
            container: bridge(
                "x",
                &["SERVICE_IGNORE=true"],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: options(),
            expected: &[],
        },
        Case {
            what: "SERVICE_<port>_IGNORE on one port (the other keeps its group suffix)",
            container: bridge(
                "x",
                &[],
                json!({"SERVICE_80_IGNORE": "1"}),
                &["80/tcp", "81/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080"), "81/tcp": published("127.0.0.1", "1081")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("x-81", "host1:c1:81", "127.0.0.1", 1081)],
        },
        Case {
            what: "-explicit: only named ports",
            container: bridge(
                "x",
                &["SERVICE_81_NAME=admin"],
                json!({}),
                &["80/tcp", "81/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080"), "81/tcp": published("127.0.0.1", "1081")}),
            ),
            network_container: None,
            options: DeriveOptions {
                explicit: true,
                ..options()
            },
            expected: &[("admin", "host1:c1:81", "127.0.0.1", 1081)],
        },
        Case {
            what: "-explicit without any name: nothing",
            container: bridge(
                "x",
                &[],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: DeriveOptions {
                explicit: true,
                ..options()
            },
            expected: &[],
        },
        Case {
            what: "labels beat env vars",
            container: bridge(
                "x",
                &["SERVICE_NAME=env", "SERVICE_ID=env-id"],
                json!({"SERVICE_NAME": "label"}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("label", "env-id", "127.0.0.1", 1080)],
        },
        Case {
            what: "-useIpFromLabel cuts a /prefix and beats -ip",
            container: bridge(
                "x",
                &[],
                json!({"ip": "10.1.2.3/24"}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: DeriveOptions {
                ip_label: Some("ip".into()),
                host_ip: Some("10.0.0.5".into()),
                ..options()
            },
            expected: &[("x", "host1:c1:80", "10.1.2.3", 1080)],
        },
        Case {
            what: "-useIpFromLabel with the label missing keeps the detected IP",
            container: bridge(
                "x",
                &[],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: DeriveOptions {
                ip_label: Some("ip".into()),
                ..options()
            },
            expected: &[("x", "host1:c1:80", "127.0.0.1", 1080)],
        },
        Case {
            what: "--net=container:<id> uses the other container's IP and the exposed port",
            container: json!({
                "Name": "/sidecar", "Config": {"Image": "app", "ExposedPorts": {"8080/tcp": {}}},
                "HostConfig": {"NetworkMode": "container:abcdef0123456789"},
                "NetworkSettings": {"Ports": {}, "Networks": {}}
            }),
            network_container: Some(json!({
                "Name": "/pod", "HostConfig": {"NetworkMode": "default"},
                "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.9"}}}
            })),
            options: options(),
            expected: &[("app", "host1:sidecar:8080", "172.17.0.9", 8080)],
        },
        Case {
            what: "-internal on a user-defined network takes that network's IP",
            container: json!({
                "Name": "/db", "Config": {"Image": "postgres:16", "ExposedPorts": {"5432/tcp": {}}},
                "HostConfig": {"NetworkMode": "backend"},
                "NetworkSettings": {"Ports": {"5432/tcp": null}, "Networks": {
                    "aaa": {"IPAddress": "172.30.0.4"},
                    "backend": {"IPAddress": "172.20.0.5"},
                    "bridge": {"IPAddress": "172.17.0.3"}
                }}
            }),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                ..options()
            },
            expected: &[("postgres", "host1:db:5432", "172.20.0.5", 5432)],
        },
        Case {
            what: "-network picks that network's address over the network mode's",
            container: multi_network(&[]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                network: Some("overlay".into()),
                ..options()
            },
            expected: &[("web", "host1:web:80", "10.0.9.7", 80)],
        },
        Case {
            what: "SERVICE_NETWORK beats -network, a port's own beats the container's",
            container: multi_network(&["SERVICE_NETWORK=aaa", "SERVICE_81_NETWORK=bridge"]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                network: Some("overlay".into()),
                ..options()
            },
            expected: &[
                ("web-80", "host1:web:80", "172.30.0.4", 80),
                ("web-81", "host1:web:81", "172.17.0.3", 81),
            ],
        },
        Case {
            what: "a -network the container is not on falls back to the network mode's",
            container: multi_network(&[]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                network: Some("elsewhere".into()),
                ..options()
            },
            expected: &[("web", "host1:web:80", "172.20.0.5", 80)],
        },
        Case {
            what: "SERVICE_NETWORK without -internal changes nothing (published ports)",
            container: bridge(
                "web",
                &["SERVICE_NETWORK=overlay"],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "8080")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("web", "host1:c1:80", "127.0.0.1", 8080)],
        },
        Case {
            what: "-ipv6 adds a dual-stack endpoint's IPv6 address as <id>-ipv6",
            container: multi_network(&["SERVICE_ID=w1"]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                ipv6: true,
                network: Some("overlay".into()),
                ..options()
            },
            expected: &[
                ("web", "w1", "10.0.9.7", 80),
                ("web", "w1-ipv6", "fd00::7", 80),
            ],
        },
        Case {
            what: "-ipv6 on an IPv4-only endpoint adds nothing",
            container: multi_network(&[]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                ipv6: true,
                ..options()
            },
            expected: &[("web", "host1:web:80", "172.20.0.5", 80)],
        },
        Case {
            what: "-ipv6 without -internal registers the published port only",
            container: bridge(
                "web",
                &[],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "8080")}),
            ),
            network_container: None,
            options: DeriveOptions {
                ipv6: true,
                ..options()
            },
            expected: &[("web", "host1:c1:80", "127.0.0.1", 8080)],
        },
        Case {
            what: "SERVICE_NETWORK of an IPv6-only network registers its IPv6 address",
            container: multi_network(&["SERVICE_NETWORK=v6only"]),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                ..options()
            },
            expected: &[("web", "host1:web:80", "fd00::9", 80)],
        },
        Case {
            what: "-internal with an IPv6-only network",
            container: json!({
                "Name": "/v6", "Config": {"Image": "app", "ExposedPorts": {"80/tcp": {}}},
                "HostConfig": {"NetworkMode": "v6net"},
                "NetworkSettings": {"Ports": {"80/tcp": null}, "Networks": {
                    "v6net": {"IPAddress": "", "GlobalIPv6Address": "fd00::5"}
                }}
            }),
            network_container: None,
            options: DeriveOptions {
                internal: true,
                ..options()
            },
            expected: &[("app", "host1:v6:80", "fd00::5", 80)],
        },
        Case {
            what: "a published port with an explicit ID gets no :udp",
            container: bridge(
                "dns",
                &["SERVICE_53_ID=dns1"],
                json!({}),
                &["53/udp"],
                json!({"53/udp": published("127.0.0.1", "5353")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("dns", "dns1", "127.0.0.1", 5353)],
        },
        Case {
            what: "an image given by digest",
            container: bridge(
                "registry.example:5000/team/app@sha256:abcd",
                &[],
                json!({}),
                &["80/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("app", "host1:c1:80", "127.0.0.1", 1080)],
        },
        Case {
            what: "no ports: nothing",
            container: bridge("x", &["SERVICE_NAME=x"], json!({}), &[], json!({})),
            network_container: None,
            options: options(),
            expected: &[],
        },
        Case {
            what: "odd ports and bindings are skipped, the rest registered",
            container: bridge(
                "x",
                &["SERVICE_NAME="],
                json!({}),
                &["80/tcp", "90/sctp", "abc/tcp"],
                json!({"80/tcp": published("127.0.0.1", "1080"), "90/sctp": published("", "9"), "81/tcp": published("127.0.0.1", "http")}),
            ),
            network_container: None,
            options: options(),
            expected: &[("x-80", "host1:c1:80", "127.0.0.1", 1080)],
        },
    ]
}

#[test]
fn derivation_cases() {
    for case in cases() {
        let container = inspect(case.container);
        let network = case.network_container.map(inspect);
        let derived = derive_services(&container, network.as_ref(), &case.options);
        let got: Vec<(&str, &str, &str, u16)> = derived
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.id.as_str(), s.ip.as_str(), s.port))
            .collect();
        assert_eq!(got, case.expected, "{}", case.what);
    }
}

#[test]
fn tags_keep_the_written_order_and_attributes_are_kept() {
    let container = inspect(bridge(
        "x",
        &[r"SERVICE_TAGS=b,a\,x", "SERVICE_REGION=eu"],
        json!({}),
        &["53/udp"],
        json!({"53/udp": published("127.0.0.1", "5353")}),
    ));
    let options = DeriveOptions {
        forced_tags: "forced".into(),
        ttl: 40,
        ..options()
    };
    let derived = derive_services(&container, None, &options);
    let service = &derived.services[0];
    assert_eq!(service.tags, ["b", "a,x", "forced", "udp"]);
    assert_eq!(
        service.attributes.get("region").map(String::as_str),
        Some("eu")
    );
    assert_eq!(service.protocol, Protocol::Udp);
    assert_eq!(service.ttl, 40);
}

#[test]
fn odd_metadata_gives_warnings_not_failures() {
    let container = inspect(bridge(
        "x",
        &["SERVICE_81_NAME=nope", "SERVICE_80_=x"],
        json!({}),
        &["80/tcp"],
        json!({"80/tcp": published("127.0.0.1", "1080")}),
    ));
    let derived = derive_services(&container, None, &options());
    assert_eq!(derived.services.len(), 1);
    assert_eq!(derived.services[0].name, "x");
    assert_eq!(derived.warnings.len(), 2, "{:?}", derived.warnings);
    assert!(
        derived.warnings[0].contains("SERVICE_80_"),
        "{:?}",
        derived.warnings
    );
    assert!(
        derived.warnings[1].contains("port 81"),
        "{:?}",
        derived.warnings
    );
}

#[test]
fn huge_label_sets_are_fine() {
    let labels: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("SERVICE_{i}_NAME"), json!(format!("n{i}"))))
        .chain((0..5_000).map(|i| (format!("other.label.{i}"), json!("v"))))
        .collect();
    let container = inspect(bridge(
        "x",
        &[],
        Value::Object(labels),
        &["80/tcp"],
        json!({"80/tcp": published("127.0.0.1", "1080")}),
    ));
    let derived = derive_services(&container, None, &options());
    assert_eq!(derived.services.len(), 1);
    assert_eq!(derived.services[0].name, "n80");
}

#[test]
fn missing_network_container_falls_back_with_a_warning() {
    let container = inspect(json!({
        "Name": "/sidecar", "Config": {"Image": "app", "ExposedPorts": {"8080/tcp": {}}},
        "HostConfig": {"NetworkMode": "container:abcdef"},
    }));
    let derived = derive_services(&container, None, &options());
    assert_eq!(derived.services[0].ip, "10.0.0.9");
    assert!(
        derived.warnings[0].contains("abcdef"),
        "{:?}",
        derived.warnings
    );
}

#[test]
fn image_names() {
    let cases = [
        ("elasticsearch:1.5.2", "elasticsearch"),
        ("gliderlabs/foobar:1.2", "foobar"),
        ("localhost:5000/a/b", "b"),
        ("app@sha256:00", "app"),
        ("", ""),
    ];
    for (image, name) in cases {
        assert_eq!(image_name(image), name, "{image}");
    }
}

mod hostile {
    //! Generated hostile inspect data: huge, non-ASCII and control-character metadata, odd port
    //! specs and bindings. Derivation never panics, and every record it yields has a key that
    //! skydns can answer for (or is refused with an error, never written half-valid).

    use super::*;
    use crate::registry_uri::RegistryUri;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z0-9._-]{0,12}",
            "\\PC{0,40}",
            Just("x".repeat(70_000)),
            Just("é".repeat(300)),
            Just(String::from("\u{0}\u{7f}\n\t/..//")),
        ]
    }

    fn env_entry() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just("NAME"),
            Just("ID"),
            Just("TAGS"),
            Just("IGNORE"),
            Just("CHECK_HTTP"),
            Just(""),
        ];
        let port = prop_oneof![
            Just(String::new()),
            (0u32..70_000).prop_map(|p| format!("{p}_")),
            text().prop_map(|t| format!("{t}_")),
        ];
        prop_oneof![
            (port, field, text()).prop_map(|(p, f, v)| format!("SERVICE_{p}{f}={v}")),
            text(),
            text().prop_map(|v| format!("SERVICE_NAME={v}")),
        ]
    }

    fn port_key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (0u32..70_000, prop_oneof![Just("tcp"), Just("udp"), Just("sctp")])
                .prop_map(|(p, proto)| format!("{p}/{proto}")),
            1 => text(),
            1 => Just("80-90/tcp".to_owned()),
            1 => Just("/tcp".to_owned()),
        ]
    }

    fn binding() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(Value::Null),
            1 => Just(json!([])),
            2 => (text(), text()).prop_map(|(ip, port)| json!([{"HostIp": ip, "HostPort": port}])),
            4 => (0u32..70_000).prop_map(|p| json!([{"HostIp": "0.0.0.0", "HostPort": p.to_string()}])),
            2 => (0u32..70_000).prop_map(|p| json!([{"HostIp": "::", "HostPort": p.to_string()}])),
        ]
    }

    fn container() -> impl Strategy<Value = Value> {
        let image = prop_oneof![text(), "[a-z][a-z0-9/_.:-]{0,20}"];
        (
            text(),
            image,
            prop::collection::vec(env_entry(), 0..12),
            prop::collection::btree_map(text(), text(), 0..6),
            prop::collection::btree_map(port_key(), binding(), 0..5),
            text(),
        )
            .prop_map(|(name, image, env, labels, ports, ip)| {
                let exposed: serde_json::Map<String, Value> =
                    ports.keys().map(|p| (p.clone(), json!({}))).collect();
                json!({
                    "Id": "0123456789abcdef",
                    "Name": name,
                    "State": {"Running": true, "ExitCode": 0},
                    "Config": {"Image": image, "Env": env, "Labels": labels, "ExposedPorts": exposed},
                    "HostConfig": {"NetworkMode": "default"},
                    "NetworkSettings": {
                        "Ports": ports,
                        "Networks": {"bridge": {"IPAddress": ip, "GlobalIPv6Address": ""}}
                    }
                })
            })
    }

    #[test]
    fn hostile_metadata_never_panics_and_keys_stay_answerable() {
        let uri = RegistryUri::parse("skydns2://127.0.0.1:2379/example.local").unwrap();
        let schema = common::KeySchema::new("/skydns").unwrap();
        let (derived_cases, services) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 400,
            ..ProptestConfig::default()
        });
        let result = runner.run(&(container(), any::<bool>()), |(value, internal)| {
            // Docker's JSON types are strict: a shape serde refuses never reaches derivation.
            let Ok(container) = serde_json::from_value::<ContainerInspectResponse>(value) else {
                return Ok(());
            };
            derived_cases.fetch_add(1, Ordering::Relaxed);
            let options = DeriveOptions {
                internal,
                ..options()
            };
            let derived = derive_services(&container, None, &options);
            for service in &derived.services {
                if let Ok((key, value)) = uri.backend.entry(service) {
                    services.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(schema.name(&key).is_ok(), "unanswerable key {key:?}");
                    prop_assert!(key.starts_with(&uri.backend.prefix()), "{key:?}");
                    prop_assert!(serde_json::from_str::<Value>(&value).is_ok(), "{value:?}");
                }
            }
            Ok(())
        });
        let (derived_cases, services) = (derived_cases.into_inner(), services.into_inner());
        eprintln!(
            "hostile metadata: {derived_cases} containers derived, {services} records checked"
        );
        if let Err(failure) = result {
            panic!("{failure}");
        }
        assert!(
            derived_cases >= 200,
            "the generator mostly made JSON Docker cannot send"
        );
        assert!(services > 0, "no generated container gave a record");
    }
}

#[test]
fn a_service_network_the_container_is_not_on_is_warned_once() {
    let container = inspect(multi_network(&[
        "SERVICE_NETWORK=nowhere",
        "SERVICE_81_NAME=other",
    ]));
    let options = DeriveOptions {
        internal: true,
        ..options()
    };
    let derived = derive_services(&container, None, &options);
    let ips: Vec<&str> = derived.services.iter().map(|s| s.ip.as_str()).collect();
    assert_eq!(
        ips,
        ["172.20.0.5", "172.20.0.5"],
        "the network mode's address"
    );
    let warned: Vec<&String> = derived
        .warnings
        .iter()
        .filter(|w| w.contains("\"nowhere\""))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", derived.warnings);
    // The field is a choice of address, not a record attribute.
    assert!(
        derived
            .services
            .iter()
            .all(|s| !s.attributes.contains_key("network"))
    );
}
