//! `skydns healthcheck`: asks the running server for the SOA of its domain over UDP, for Docker's
//! `HEALTHCHECK`. Healthy means a reply with the query's ID that is not SERVFAIL.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// How long the check waits for the answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(3);

/// Where to send the query: the listen address, with an unspecified IP replaced by loopback.
pub(crate) fn target(addr: &str) -> anyhow::Result<SocketAddr> {
    let listen = skydns::config::parse_socket_addr(addr)
        .with_context(|| format!("-addr {addr:?} is not a literal IP:port"))?;
    Ok(common::healthcheck::local_target(listen))
}

/// Sends one SOA query for `domain` to `server` and checks the reply.
pub(crate) async fn check(server: SocketAddr, domain: &str) -> anyhow::Result<ResponseCode> {
    let name = Name::from_ascii(domain).with_context(|| format!("bad domain {domain:?}"))?;
    let mut query = Message::query();
    query.add_query(Query::query(name, RecordType::SOA));
    let packet = query.to_vec().context("cannot encode the query")?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    socket
        .send(&packet)
        .await
        .with_context(|| format!("cannot send to {server}"))?;
    let mut buf = vec![0u8; 4096];
    let received = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {server} within {TIMEOUT:?}"))?
        .with_context(|| format!("no answer from {server}"))?;
    let reply = Message::from_vec(&buf[..received])
        .with_context(|| format!("malformed answer from {server}"))?;
    if reply.metadata.id != query.metadata.id {
        bail!("answer from {server} carries another query's ID");
    }
    let rcode = reply.metadata.response_code;
    if rcode == ResponseCode::ServFail {
        bail!("{server} answers SERVFAIL for {domain}");
    }
    Ok(rcode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use clap::{CommandFactory, Parser};
    use harness::process::free_tcp_udp_port;
    use harness::{EtcdServer, wait_until};
    use skydns::Flags;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unspecified_addresses_are_checked_on_loopback() {
        assert_eq!(target("0.0.0.0:53").unwrap().to_string(), "127.0.0.1:53");
        assert_eq!(target("[::]:53").unwrap().to_string(), "[::1]:53");
        assert_eq!(
            target("10.1.2.3:5353").unwrap().to_string(),
            "10.1.2.3:5353"
        );
        assert!(target("localhost:53").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthy_while_the_server_answers_unhealthy_without_it() {
        let etcd = EtcdServer::start().await;
        let port = free_tcp_udp_port();
        let addr = format!("127.0.0.1:{port}");
        let command = Flags::command();
        let flags = Flags::parse_from(common::cli::go_style_args(
            &command,
            strings(&[
                "skydns",
                "-addr",
                &addr,
                "-machines",
                &etcd.endpoint(),
                "-domain",
                "staging.example.local.",
                "-no-rec",
            ]),
        ));
        let config = flags.into_config().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(skydns::run(config, shutdown.clone()));
        let server_addr = target(&addr).unwrap();

        let rcode = wait_until(
            "skydns to answer the health check",
            Duration::from_secs(30),
            || async { check(server_addr, "staging.example.local.").await.ok() },
        )
        .await;
        assert_eq!(rcode, ResponseCode::NoError);

        shutdown.cancel();
        server.await.unwrap().unwrap();
        let error = check(server_addr, "staging.example.local.")
            .await
            .unwrap_err();
        assert!(error.to_string().contains(&addr), "{error:#}");
    }
}
