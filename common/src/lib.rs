//! Shared by registrator, skydns and logspout: the etcd key schema, the service record and
//! service model, and the plumbing every component needs (etcd and Docker connections, the
//! shutdown signal, the retry policy, Go-style flags, logging, metrics over HTTP). Each concept
//! is defined here once.

pub mod backoff;
pub mod cli;
pub mod docker;
pub mod duration;
pub mod etcd;
pub mod healthcheck;
pub mod http;
pub mod keys;
pub mod logging;
pub mod net;
pub mod ratelimit;
pub mod record;
pub mod service;
pub mod shutdown;

pub use backoff::{Backoff, RetryError};
pub use docker::{DockerHost, DockerSettings, DockerTls};
pub use etcd::{EtcdSettings, EtcdTls};
pub use keys::{DomainName, KeyError, KeySchema};
pub use record::ServiceRecord;
pub use service::{Protocol, Service};
pub use tokio_util::sync::CancellationToken;
