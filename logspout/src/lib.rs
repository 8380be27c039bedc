//! Logspout: ships every container's stdout/stderr to syslog and raw routes.
//!
//! This crate has no implementation yet; the workspace ships no `logspout` binary until it does.
