//! Plumbing shared by the components' `healthcheck` subcommands (Docker `HEALTHCHECK`): which
//! command line to check, and where to reach the server the container runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The command line a check is configured from: the arguments after `healthcheck`, or, when
/// there are none, those of PID 1 if PID 1 is this same program (the container's entrypoint),
/// so that `HEALTHCHECK CMD ["/bin/x", "healthcheck"]` checks what the container runs. The
/// environment is the container's in both cases. `pid1_cmdline` is `/proc/1/cmdline`.
pub fn arguments(argv: &[String], pid1_cmdline: Option<&[u8]>) -> Vec<String> {
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

/// The address to check a server listening on `addr` at: an unspecified IP (`0.0.0.0`, `::`)
/// becomes loopback.
pub fn local_target(mut addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// argv, PID 1's command line, the arguments the check parses.
    type Case = (
        &'static [&'static str],
        Option<&'static [u8]>,
        &'static [&'static str],
    );

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
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
                &["/bin/skydns", "healthcheck"],
                Some(b"/usr/bin/skydns\0-addr\x000.0.0.0:5353\0"),
                &["/bin/skydns", "-addr", "0.0.0.0:5353"],
            ),
            (
                &["/bin/skydns", "healthcheck"],
                Some(b"/bin/skydns\0healthcheck\0"),
                &["/bin/skydns"],
            ),
            (
                &["/bin/skydns", "healthcheck"],
                Some(b"/sbin/init\0splash\0"),
                &["/bin/skydns"],
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

    #[test]
    fn unspecified_addresses_are_checked_on_loopback() {
        let cases = [
            ("0.0.0.0:53", "127.0.0.1:53"),
            ("[::]:8080", "[::1]:8080"),
            ("10.1.2.3:5353", "10.1.2.3:5353"),
        ];
        for (addr, expected) in cases {
            assert_eq!(local_target(addr.parse().unwrap()).to_string(), expected);
        }
    }
}
