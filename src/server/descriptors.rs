//! The open-file limit: raised from the soft to the hard limit at start, and what it leaves
//! decides the default `server.max_connections`, so that the connection limit turns clients
//! away before `accept` fails with "Too many open files" (which would starve the admin
//! listener and every other descriptor the server needs).

use super::config::DEFAULT_MAX_CONNECTIONS;

/// Descriptors kept for everything that is not a client connection: listeners, the runtime,
/// the file watcher, logs, reloads.
const RESERVED: u64 = 64;

/// The process's open-file limit around [`raise`]; `None` is unlimited or unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpenFiles {
    /// The soft limit found at start.
    pub(super) before: Option<u64>,
    /// The soft limit now.
    pub(super) soft: Option<u64>,
    /// The hard limit.
    pub(super) hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit (a failure is logged; the limit stays).
#[cfg(unix)]
pub(super) fn raise() -> OpenFiles {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let found = getrlimit(Resource::Nofile);
    let mut open = OpenFiles {
        before: found.current,
        soft: found.current,
        hard: found.maximum,
    };
    // An unlimited hard limit cannot be the soft one for files (the kernel caps it), and a
    // soft limit already unlimited or at the hard one has nothing to gain.
    if let (Some(current), Some(maximum)) = (found.current, found.maximum)
        && current < maximum
    {
        let wanted = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => open.soft = getrlimit(Resource::Nofile).current,
            Err(error) => tracing::warn!(
                target: "lenscap::server",
                %error,
                soft = current,
                hard = maximum,
                "cannot raise the open-file limit to the hard limit"
            ),
        }
    }
    open
}

/// No limit to raise where there is no `setrlimit`.
#[cfg(not(unix))]
pub(super) fn raise() -> OpenFiles {
    OpenFiles {
        before: None,
        soft: None,
        hard: None,
    }
}

/// The most client connections `soft` descriptors carry: each may hold a second descriptor
/// (the file it is sent, or its upstream connection), and the admin listener and the rest of
/// the server keep theirs. At least 1, at most [`DEFAULT_MAX_CONNECTIONS`].
pub(super) fn max_connections(soft: Option<u64>, admin_max_connections: usize) -> usize {
    let Some(soft) = soft else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let reserved = RESERVED.saturating_add(admin_max_connections as u64);
    let carried = soft.saturating_sub(reserved) / 2;
    usize::try_from(carried)
        .unwrap_or(usize::MAX)
        .clamp(1, DEFAULT_MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_what_the_descriptors_leave() {
        assert_eq!(max_connections(Some(1024), 16), (1024 - 64 - 16) / 2);
        assert_eq!(max_connections(Some(128), 16), 24);
        assert_eq!(max_connections(Some(20), 16), 1);
        assert_eq!(max_connections(Some(1 << 20), 16), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(max_connections(None, 16), DEFAULT_MAX_CONNECTIONS);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let open = raise();
        if open.hard.is_some() && open.before.is_some() {
            assert_eq!(open.soft, open.hard);
        }
    }
}
