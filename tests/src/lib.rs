//! Test harness for the end-to-end suite and the component crates' tests: a real etcd (single
//! member or a cluster) on free loopback ports, a tiny busybox image built offline and
//! containers run from it, a Docker socket proxy that can play a daemon restart, DNS queries
//! over UDP and TCP with a fake upstream server, a syslog receiver (in-process, or the
//! `syslog-sink` binary as a process to SIGKILL), and test certificates with a
//! TLS front for the Docker Engine. Everything a test starts is stopped when its handle is
//! dropped, also on panic.

pub mod cluster;
pub mod dns;
pub mod docker;
pub mod docker_proxy;
pub mod etcd;
pub mod etcd_proxy;
pub mod hosts;
pub mod http;
pub mod images;
pub mod process;
pub mod sink;
pub mod syslog;
pub mod tls;
pub mod wait;

pub use dns::{DnsClient, FakeUpstream};
pub use docker::{ContainerSpec, TestContainer, TestDocker};
pub use docker_proxy::DockerProxy;
pub use etcd::{EtcdCluster, EtcdServer};
pub use syslog::{SyslogMessage, SyslogReceiver};
pub use wait::wait_until;
