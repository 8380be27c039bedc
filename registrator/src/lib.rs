//! Registrator: turns the published ports of running Docker containers into etcd service records.
//!
//! This crate has no implementation yet; the workspace ships no `registrator` binary until it does.
