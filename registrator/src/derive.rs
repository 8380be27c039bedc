//! From a container's inspect data to its services: ports, names, IDs, IPs and tags, as the
//! original registrator derives them (with its IP bugs fixed). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::ContainerInspectResponse;
use common::{Protocol, Service};

use crate::metadata::{Metadata, odd_keys, split_tags};

/// The flags and host facts that shape derivation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeriveOptions {
    /// This host's name: the first part of default service IDs.
    pub hostname: String,
    /// `-ip`: the address registered for published ports.
    pub host_ip: Option<String>,
    /// What a binding on `0.0.0.0`/`::` is registered as (the host name's address).
    pub unspecified_ip: Option<String>,
    /// `-internal`
    pub internal: bool,
    /// `-explicit`
    pub explicit: bool,
    /// `-useIpFromLabel`
    pub ip_label: Option<String>,
    /// `-network`: the network whose address `-internal` registers (`SERVICE_NETWORK` wins).
    pub network: Option<String>,
    /// `-ipv6`: with `-internal`, a dual-stack endpoint's IPv6 address is registered too.
    pub ipv6: bool,
    /// `-tags`, as written.
    pub forced_tags: String,
    /// `-ttl` in seconds (0 = none), copied into each service.
    pub ttl: u32,
}

/// The services of one container and what looked wrong on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derivation {
    pub services: Vec<Service>,
    /// Odd metadata or ports, one sentence each (logged as warnings).
    pub warnings: Vec<String>,
    /// Why nothing (or less than every port) was registered, for the log.
    pub skipped: Vec<String>,
}

/// One port of the container with its first host binding, if any.
#[derive(Debug, Clone)]
struct Port {
    number: u16,
    protocol: Protocol,
    host_ip: String,
    host_port: String,
}

/// The container whose network stack `container` shares (`--net=container:<id>`), if any.
pub fn network_container_id(container: &ContainerInspectResponse) -> Option<&str> {
    container
        .host_config
        .as_ref()?
        .network_mode
        .as_deref()?
        .strip_prefix("container:")
        .filter(|id| !id.is_empty())
}

/// The container's name without Docker's leading `/`.
pub fn container_name(container: &ContainerInspectResponse) -> &str {
    container
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
}

/// The services of `container`. `network_container` is the inspect data of the container named
/// by `--net=container:<id>`, when there is one.
pub fn derive_services(
    container: &ContainerInspectResponse,
    network_container: Option<&ContainerInspectResponse>,
    options: &DeriveOptions,
) -> Derivation {
    let mut out = Derivation::default();
    let config = container.config.clone().unwrap_or_default();
    let env = config.env.unwrap_or_default();
    let labels: HashMap<String, String> = config.labels.unwrap_or_default();

    let ports = ports(container, &mut out.warnings);
    let exposed: BTreeSet<u16> = ports.iter().map(|p| p.number).collect();
    out.warnings.extend(odd_keys(&env, &labels, &exposed));
    if ports.is_empty() {
        out.skipped.push("no published ports".to_owned());
        return out;
    }
    let ports: Vec<Port> = ports
        .into_iter()
        .filter(|p| {
            let published = options.internal || !p.host_port.is_empty();
            if !published {
                out.skipped.push(format!(
                    "port {}/{} not published on host",
                    p.number, p.protocol
                ));
            }
            published
        })
        .collect();
    let is_group = ports.len() > 1;

    let image = config
        .image
        .or_else(|| container.image.clone())
        .unwrap_or_default();
    let default_name = image_name(&image);
    let stack = match network_container_id(container) {
        None => NetworkStack::Own(container_ip(container, None)),
        Some(id) => NetworkStack::Shared(match network_container {
            Some(other) => container_ip(other, None),
            None => {
                out.warnings.push(format!(
                    "network container {id} could not be inspected; using the host's address"
                ));
                None
            }
        }),
    };
    let name_of_container = container_name(container);

    for port in ports {
        let meta = Metadata::for_port(&env, &labels, port.number);
        if meta.get("ignore").is_some() {
            out.skipped.push(format!(
                "port {}/{} ignored by SERVICE_IGNORE",
                port.number, port.protocol
            ));
            continue;
        }
        let mut name = match meta.get("name") {
            Some(name) => name.to_owned(),
            None if options.explicit => {
                out.skipped.push(format!(
                    "port {}/{} has no SERVICE_NAME (-explicit)",
                    port.number, port.protocol
                ));
                continue;
            }
            None => default_name.clone(),
        };
        if is_group && !meta.is_port_specific("name") {
            name = format!("{name}-{}", port.number);
        }

        let mut id = format!("{}:{name_of_container}:{}", options.hostname, port.number);
        let mut tags = split_tags(meta.get("tags").unwrap_or_default());
        tags.extend(split_tags(&options.forced_tags));
        if port.protocol == Protocol::Udp {
            id.push_str(":udp");
            tags.push("udp".to_owned());
        }
        if let Some(explicit_id) = meta.get("id") {
            id = explicit_id.to_owned();
        }

        // The container's own SERVICE_NETWORK is an explicit ask (a warning when it cannot be
        // met); `-network` is a host-wide preference that containers not on it fall back from.
        let stack = match (&stack, meta.get("network"), options.network.as_deref()) {
            (NetworkStack::Own(_), Some(asked), _) if options.internal => {
                NetworkStack::Own(chosen_network_ip(container, asked, &mut out.warnings))
            }
            (NetworkStack::Own(_), None, Some(preferred)) if options.internal => {
                NetworkStack::Own(container_ip(container, Some(preferred)))
            }
            _ => stack.clone(),
        };
        let Some((mut ip, service_port)) = address(&port, &stack, options, &mut out.warnings)
        else {
            continue;
        };
        if let Some(label) = options.ip_label.as_deref() {
            match label_ip(&labels, label) {
                Some(from_label) => ip = from_label,
                None => out.warnings.push(format!(
                    "label {label:?} not found in the container's configuration"
                )),
            }
        }

        // -ipv6: the same endpoint's IPv6 address as a second record, when the address
        // registered above is its IPv4 one (not for a label's address or a shared stack).
        let second = match &stack {
            NetworkStack::Own(Some(v4))
                if options.ipv6 && options.internal && options.ip_label.is_none() =>
            {
                let network = meta.get("network").or(options.network.as_deref());
                dual_stack_ipv6(container, network, v4)
            }
            _ => None,
        };
        let service = Service {
            id,
            name,
            ip,
            port: service_port,
            protocol: port.protocol,
            tags,
            attributes: meta.attributes(),
            ttl: options.ttl,
        };
        let ipv6 = second.map(|v6| Service {
            id: format!("{}-ipv6", service.id),
            ip: v6,
            ..service.clone()
        });
        out.services.push(service);
        out.services.extend(ipv6);
    }
    out
}

/// The IPv6 address of the endpoint whose IPv4 address is `v4` (on `network` if the container
/// is on it, else as [`container_ip`] chooses), when that endpoint has both.
fn dual_stack_ipv6(
    container: &ContainerInspectResponse,
    network: Option<&str>,
    v4: &str,
) -> Option<String> {
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let endpoint = network
        .and_then(|n| networks.get(n))
        .filter(|e| e.ip_address.as_deref() == Some(v4))
        .or_else(|| {
            let mut named: Vec<_> = networks.iter().collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            named
                .into_iter()
                .map(|(_, e)| e)
                .find(|e| e.ip_address.as_deref() == Some(v4))
        })?;
    endpoint
        .global_ipv6_address
        .clone()
        .filter(|v6| !v6.is_empty())
}

/// The network stack a container's ports live in, with its address if it has one.
#[derive(Debug, Clone)]
enum NetworkStack {
    Own(Option<String>),
    /// `--net=container:<other>`: the other container's.
    Shared(Option<String>),
}

/// The IP and port to register for `port`, or `None` (with a warning) when there is none.
fn address(
    port: &Port,
    stack: &NetworkStack,
    options: &DeriveOptions,
    warnings: &mut Vec<String>,
) -> Option<(String, u16)> {
    let host_ip = || {
        if let Some(ip) = &options.host_ip {
            return ip.clone();
        }
        match port.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => options
                .unspecified_ip
                .clone()
                .unwrap_or_else(|| "0.0.0.0".to_owned()),
            ip => ip.to_owned(),
        }
    };
    match stack {
        NetworkStack::Shared(ip) => return Some((ip.clone().unwrap_or_else(host_ip), port.number)),
        NetworkStack::Own(ip) if options.internal => {
            return Some((ip.clone().unwrap_or_else(host_ip), port.number));
        }
        NetworkStack::Own(_) => {}
    }
    match port.host_port.parse::<u16>() {
        Ok(host_port) if host_port > 0 => Some((host_ip(), host_port)),
        _ => {
            warnings.push(format!(
                "port {}/{} is published on host port {:?}, which is not a port number; skipped",
                port.number, port.protocol, port.host_port
            ));
            None
        }
    }
}

/// The address in label `label` (`10.0.0.5` or `10.0.0.5/24`), if set.
fn label_ip(labels: &HashMap<String, String>, label: &str) -> Option<String> {
    let value = labels
        .get(label)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())?;
    Some(
        value
            .rsplit_once('/')
            .map_or(value, |(ip, _)| ip)
            .to_owned(),
    )
}

/// Exposed ports (counted as published on `0.0.0.0` with the same number, which is what they
/// are with `--net=host`), overridden by the runtime port map. Sorted by number and protocol.
fn ports(container: &ContainerInspectResponse, warnings: &mut Vec<String>) -> Vec<Port> {
    let mut map: BTreeMap<String, (String, String)> = BTreeMap::new();
    let exposed = container
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.clone())
        .unwrap_or_default();
    for key in exposed {
        let number = key.split('/').next().unwrap_or_default().to_owned();
        map.insert(key, ("0.0.0.0".to_owned(), number));
    }
    let runtime = container
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.clone())
        .unwrap_or_default();
    for (key, bindings) in runtime {
        let first = bindings.and_then(|b| b.into_iter().next());
        let host_ip = first
            .as_ref()
            .and_then(|b| b.host_ip.clone())
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let host_port = first.and_then(|b| b.host_port).unwrap_or_default();
        map.insert(key, (host_ip, host_port));
    }
    let mut ports: Vec<Port> = map
        .into_iter()
        .filter_map(|(key, (host_ip, host_port))| {
            let (number, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            match (number.parse::<u16>(), Protocol::from_docker(proto)) {
                (Ok(number), Some(protocol)) if number > 0 => Some(Port {
                    number,
                    protocol,
                    host_ip,
                    host_port,
                }),
                _ => {
                    warnings.push(format!(
                        "port {key:?} is not a TCP or UDP port number; skipped"
                    ));
                    None
                }
            }
        })
        .collect();
    ports.sort_by_key(|p| (p.number, p.protocol));
    ports
}

/// The container's address on `network` (`SERVICE_NETWORK` or `-network`); when the container
/// has no address there, a warning and the default choice of [`container_ip`].
fn chosen_network_ip(
    container: &ContainerInspectResponse,
    network: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let ip = container_ip(container, Some(network));
    let on_network = container
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|networks| networks.get(network))
        .and_then(endpoint_ip);
    if on_network.is_none() {
        let warning = format!(
            "SERVICE_NETWORK: the container has no address on network {network:?}; registering {}",
            ip.as_deref().unwrap_or("the host's address")
        );
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    ip
}

/// An endpoint's IPv4 address, else its IPv6 address.
fn endpoint_ip(endpoint: &bollard::models::EndpointSettings) -> Option<String> {
    [&endpoint.ip_address, &endpoint.global_ipv6_address]
        .into_iter()
        .flatten()
        .find(|ip| !ip.is_empty())
        .cloned()
}

/// The container's own address: on the `preferred` network, else on the network its network
/// mode names, else on the default bridge, else on its first network by name. IPv6 when it has
/// no IPv4 address there.
fn container_ip(container: &ContainerInspectResponse, preferred: Option<&str>) -> Option<String> {
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let address = |name: &str| networks.get(name).and_then(endpoint_ip);
    let mode = container
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .unwrap_or_default();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    preferred
        .and_then(address)
        .or_else(|| address(mode))
        .or_else(|| address("bridge"))
        .or_else(|| names.into_iter().find_map(|n| address(n)))
}

/// The default service name: the image's last path segment without tag or digest
/// (`gliderlabs/foobar:1.2` → `foobar`).
pub fn image_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or_default();
    let base = base.split('@').next().unwrap_or_default();
    base.split(':').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests;
