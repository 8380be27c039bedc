//! systemd socket activation (`-systemd`, `SKYDNS_SYSTEMD`, `"systemd": true` in the etcd
//! document): the listening sockets come from the service manager (`LISTEN_PID`, `LISTEN_FDS`,
//! descriptors from 3 on) instead of being bound on `-addr`, and `READY=1` goes to
//! `NOTIFY_SOCKET` once queries are served.
//!
//! [`Handover::from_env`] reads the variables, removes them from the environment (so nothing
//! inherits them) and takes every descriptor that is a UDP socket or a TCP listener, checking
//! each one's type (`SO_TYPE`) as the `listenfd` crate does. It runs at start-up, before any
//! thread exists, because removing a variable is only safe then; whether the sockets are used
//! is decided later, once the etcd document (which can set `systemd`) has been read. As in the
//! original, a descriptor of another kind is skipped, and it is an error only when neither a
//! UDP nor a TCP socket was handed over.

use std::net::{SocketAddr, TcpListener, UdpSocket};

/// First descriptor systemd hands over (`SD_LISTEN_FDS_START`).
const FIRST_FD: usize = 3;

/// Why `-systemd` has no socket to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "no UDP or TCP sockets supplied by systemd (-systemd): LISTEN_FDS is not set; start \
         skydns from a systemd .socket unit, or without -systemd to listen on -addr"
    )]
    NotSet,
    #[error(
        "no UDP or TCP sockets supplied by systemd (-systemd): LISTEN_FDS {value:?} is not a number"
    )]
    BadCount { value: String },
    #[error(
        "no UDP or TCP sockets supplied by systemd (-systemd): LISTEN_PID is not set (systemd \
         sets it to the pid of the process the sockets are for)"
    )]
    NoPid,
    #[error(
        "no UDP or TCP sockets supplied by systemd (-systemd): they are for process {listen_pid:?} \
         (LISTEN_PID), not this one ({pid})"
    )]
    OtherProcess { listen_pid: String, pid: u32 },
    #[error(
        "no UDP or TCP sockets supplied by systemd (-systemd): LISTEN_FDS is {count} and none of \
         the descriptors is a UDP socket or a TCP listener"
    )]
    NoneUsable { count: usize },
}

/// The sockets systemd handed this process, or why there are none.
#[derive(Debug)]
pub struct Handover {
    sockets: Result<Sockets, ActivationError>,
}

/// Handed-over sockets, UDP and TCP, in descriptor order.
#[derive(Debug, Default)]
pub struct Sockets {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    /// Descriptors that were neither (skipped, as the original does), with the reason.
    pub skipped: Vec<(usize, String)>,
}

impl Handover {
    /// Nothing handed over (what an in-process server gets: it never takes descriptors).
    pub fn none() -> Self {
        Self {
            sockets: Err(ActivationError::NotSet),
        }
    }

    /// Reads `LISTEN_PID`/`LISTEN_FDS`, removes them from the environment and takes the
    /// sockets if they are for this process. Call it before starting any thread.
    pub fn from_env() -> Self {
        let listen_fds = std::env::var("LISTEN_FDS").ok();
        let listen_pid = std::env::var("LISTEN_PID").ok();
        // Reads the same variables, and removes both whatever they say.
        let mut fds = listenfd::ListenFd::from_env();
        let sockets = check_env(
            listen_fds.as_deref(),
            listen_pid.as_deref(),
            std::process::id(),
        )
        .and_then(|count| {
            // listenfd also accepts a missing LISTEN_PID; `check_env` does not, so when it
            // gets here listenfd saw the same count for this process.
            let mut sockets = Sockets::default();
            for index in 0..count.min(fds.len()) {
                let fd = FIRST_FD + index;
                match fds.take_udp_socket(index) {
                    Ok(Some(socket)) => sockets.udp.push(socket),
                    Ok(None) => {}
                    Err(udp_error) => match fds.take_tcp_listener(index) {
                        Ok(Some(listener)) => sockets.tcp.push(listener),
                        Ok(None) => {}
                        Err(tcp_error) => sockets
                            .skipped
                            .push((fd, format!("{udp_error}; {tcp_error}"))),
                    },
                }
            }
            if sockets.udp.is_empty() && sockets.tcp.is_empty() {
                return Err(ActivationError::NoneUsable { count });
            }
            Ok(sockets)
        });
        Self { sockets }
    }

    /// Fails as `-systemd` would if nothing usable was handed over.
    pub fn check(&self) -> Result<(), ActivationError> {
        self.sockets.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The sockets, for serving.
    pub fn take(self) -> Result<Sockets, ActivationError> {
        self.sockets
    }
}

/// The descriptor count the variables give this process (`pid`), as `sd_listen_fds` reads them:
/// `LISTEN_PID` must be this process and `LISTEN_FDS` a number; 0 is no socket.
pub fn check_env(
    listen_fds: Option<&str>,
    listen_pid: Option<&str>,
    pid: u32,
) -> Result<usize, ActivationError> {
    let Some(listen_fds) = listen_fds else {
        return Err(ActivationError::NotSet);
    };
    let count = listen_fds
        .trim()
        .parse::<usize>()
        .map_err(|_| ActivationError::BadCount {
            value: listen_fds.to_owned(),
        })?;
    match listen_pid {
        None | Some("") => return Err(ActivationError::NoPid),
        Some(text) if text.trim().parse::<u32>().ok() != Some(pid) => {
            return Err(ActivationError::OtherProcess {
                listen_pid: text.to_owned(),
                pid,
            });
        }
        Some(_) => {}
    }
    if count == 0 {
        return Err(ActivationError::NoneUsable { count });
    }
    Ok(count)
}

impl Sockets {
    /// Local addresses, for the log (`udp://…`, `tcp://…`).
    pub fn addresses(&self) -> Vec<String> {
        let udp = self.udp.iter().map(|s| ("udp", s.local_addr()));
        let tcp = self.tcp.iter().map(|l| ("tcp", l.local_addr()));
        udp.chain(tcp)
            .map(
                |(transport, addr): (_, std::io::Result<SocketAddr>)| match addr {
                    Ok(addr) => format!("{transport}://{addr}"),
                    Err(_) => format!("{transport}://?"),
                },
            )
            .collect()
    }
}

/// Tells the service manager (`NOTIFY_SOCKET`, if set) that queries are served.
pub fn notify_ready() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "cannot send READY=1 to NOTIFY_SOCKET");
    }
}

/// Tells the service manager (`NOTIFY_SOCKET`, if set) that the server is stopping.
pub fn notify_stopping() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
        tracing::warn!(%error, "cannot send STOPPING=1 to NOTIFY_SOCKET");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_are_read_as_sd_listen_fds_reads_them() {
        assert_eq!(check_env(Some("2"), Some("42"), 42), Ok(2));
        assert_eq!(check_env(Some(" 1"), Some("42 "), 42), Ok(1));
        assert_eq!(
            check_env(None, Some("42"), 42),
            Err(ActivationError::NotSet)
        );
        assert_eq!(check_env(None, None, 42), Err(ActivationError::NotSet));
        assert_eq!(
            check_env(Some("two"), Some("42"), 42),
            Err(ActivationError::BadCount {
                value: "two".into()
            })
        );
        assert_eq!(check_env(Some("2"), None, 42), Err(ActivationError::NoPid));
        assert_eq!(
            check_env(Some("2"), Some(""), 42),
            Err(ActivationError::NoPid)
        );
        assert_eq!(
            check_env(Some("2"), Some("41"), 42),
            Err(ActivationError::OtherProcess {
                listen_pid: "41".into(),
                pid: 42
            })
        );
        assert_eq!(
            check_env(Some("0"), Some("42"), 42),
            Err(ActivationError::NoneUsable { count: 0 })
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (error, word) in [
            (ActivationError::NotSet, "LISTEN_FDS is not set"),
            (ActivationError::NoPid, "LISTEN_PID is not set"),
            (
                ActivationError::OtherProcess {
                    listen_pid: "1".into(),
                    pid: 2,
                },
                "(LISTEN_PID), not this one (2)",
            ),
            (ActivationError::NoneUsable { count: 0 }, "LISTEN_FDS is 0"),
        ] {
            let text = error.to_string();
            assert!(
                text.starts_with("no UDP or TCP sockets supplied by systemd"),
                "{text}"
            );
            assert!(text.contains(word), "{text}");
        }
        assert!(Handover::none().check().is_err());
    }
}
