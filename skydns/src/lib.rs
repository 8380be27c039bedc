//! SkyDNS: authoritative DNS for the service records that registrator keeps in etcd.
//!
//! This crate has no implementation yet; the workspace ships no `skydns` binary until it does.
