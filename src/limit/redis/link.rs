//! The connection to the fleet's Redis: one server (through the crate's connection manager)
//! or a Redis Cluster (through its cluster connection), behind one way of sending commands.
//!
//! ```text
//! let link = Link::open(&servers, password, connect_timeout)?;   // connects lazily
//! let answers = link.connection().await?.query_all(&[cmd("TIME"), cmd("GET").arg(key)]).await?;
//! ```
//!
//! [`Connection::query_all`] sends a list of commands as one pipeline to one server. On a
//! cluster it cuts the list by hash tag (the `{…}` of a key: one tag, one slot), sends each
//! part as a pipeline to the node that holds its slot, all parts at once, and puts the answers
//! back in order: one round trip per node touched, taken in parallel. A command without a key
//! (`TIME`) rides with the first part.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

/// Where the fleet's Redis is: one server's URL, or a cluster's seed nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Servers {
    /// One server (or a primary behind a fixed address): `redis://host:port/db`.
    One(String),
    /// A Redis Cluster: the URLs of some of its nodes (the rest is learned from them).
    Cluster(Vec<String>),
}

/// Opened once per process; hands out cheap clones of the live connection.
pub(super) enum Link {
    One(ConnectionManager),
    Cluster(Box<ClusterLink>),
}

pub(super) struct ClusterLink {
    client: ClusterClient,
    /// Made on first use: a cluster connection learns the slot map when it is made, so an
    /// unreachable cluster at start leaves this empty until a probe succeeds.
    connection: OnceCell<ClusterConnection>,
}

/// A connection to send one request's commands on.
#[derive(Clone)]
pub(super) enum Connection {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    /// Prepares the connection without waiting for Redis; fails only on settings the crate
    /// cannot use (a malformed URL).
    pub(super) fn open(
        servers: &Servers,
        password: Option<&str>,
        connect_timeout: Duration,
    ) -> RedisResult<Link> {
        match servers {
            Servers::One(url) => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
                if let Some(password) = password {
                    let settings = info.redis_settings().clone().set_password(password);
                    info = info.set_redis_settings(settings);
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                let client = redis::Client::open(info)?;
                Ok(Link::One(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            Servers::Cluster(nodes) => {
                let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .retries(2)
                    .max_retry_wait(2_000);
                if let Some(password) = password {
                    builder = builder.password(password);
                }
                Ok(Link::Cluster(Box::new(ClusterLink {
                    client: builder.build()?,
                    connection: OnceCell::new(),
                })))
            }
        }
    }

    /// The connection, made first when it is a cluster's not reached yet.
    pub(super) async fn connection(&self) -> RedisResult<Connection> {
        match self {
            Link::One(manager) => Ok(Connection::One(manager.clone())),
            Link::Cluster(cluster) => {
                let live = cluster
                    .connection
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await?;
                Ok(Connection::Cluster(live.clone()))
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }
}

impl Connection {
    /// Sends `commands` and returns their answers in order: one pipeline to one server; on a
    /// cluster, one pipeline per hash tag, all sent at once.
    pub(super) async fn query_all(&mut self, commands: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Connection::One(manager) => pipeline(&commands).query_async(manager).await,
            Connection::Cluster(cluster) => {
                let parts = by_tag(&commands);
                let sent: Vec<_> = parts
                    .iter()
                    .map(|part| {
                        let pipe = pipeline(part.iter().map(|&i| &commands[i]));
                        let mut connection = cluster.clone();
                        tokio::spawn(async move {
                            pipe.query_async::<Vec<Value>>(&mut connection).await
                        })
                    })
                    .collect();
                let mut answers = vec![Value::Nil; commands.len()];
                for (part, sent) in parts.iter().zip(sent) {
                    let values = sent.await.map_err(|joined| {
                        redis::RedisError::from(std::io::Error::other(joined.to_string()))
                    })??;
                    for (&i, value) in part.iter().zip(values) {
                        answers[i] = value;
                    }
                }
                Ok(answers)
            }
        }
    }
}

fn pipeline<'a>(commands: impl IntoIterator<Item = &'a Cmd>) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for command in commands {
        pipe.add_command(command.clone());
    }
    pipe
}

/// The indexes of `commands`, grouped by the hash tag of their first key (the part of the
/// key inside its first `{…}`, or the whole key): every group lies in one slot. Commands
/// without a key join the first group.
fn by_tag(commands: &[Cmd]) -> Vec<Vec<usize>> {
    let mut tags: Vec<(Option<Vec<u8>>, Vec<usize>)> = Vec::new();
    let mut keyless = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let Some(tag) = first_key(command).map(hash_tag) else {
            keyless.push(i);
            continue;
        };
        match tags.iter_mut().find(|(t, _)| t.as_deref() == Some(tag)) {
            Some((_, group)) => group.push(i),
            None => tags.push((Some(tag.to_vec()), vec![i])),
        }
    }
    match tags.first_mut() {
        Some((_, first)) => {
            first.extend(keyless);
            first.sort_unstable();
        }
        None => tags.push((None, keyless)),
    }
    tags.into_iter().map(|(_, group)| group).collect()
}

/// The key of `GET key`, `SET key …`, or `EVALSHA sha 1 key …`.
fn first_key(command: &Cmd) -> Option<&[u8]> {
    let mut args = command.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        let _script = args.next()?;
        let count = args.next()?;
        return (count != b"0").then(|| args.next()).flatten();
    }
    if name.eq_ignore_ascii_case(b"TIME") || name.eq_ignore_ascii_case(b"SCRIPT") {
        return None;
    }
    args.next()
}

/// What Redis Cluster hashes a key by: the bytes inside its first `{…}` when not empty.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::One(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::One(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::One(manager) => manager.get_db(),
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_grouped_by_the_slot_their_key_hashes_to() {
        let get = |key: &str| {
            let mut c = redis::cmd("GET");
            c.arg(key);
            c
        };
        let mut merge = redis::cmd("EVALSHA");
        merge.arg("abc").arg(1).arg("lenscap:s:c:{00ff}").arg("x");
        let commands = vec![
            redis::cmd("TIME"),
            get("lenscap:s:c:{00ff}"),
            get("lenscap:s:n:{1234}"),
            merge,
            get("plain"),
        ];
        assert_eq!(by_tag(&commands), vec![vec![0, 1, 3], vec![2], vec![4]]);
        assert_eq!(hash_tag(b"a{b}c"), b"b");
        assert_eq!(hash_tag(b"a{}c"), b"a{}c");
        assert_eq!(hash_tag(b"a{bc"), b"a{bc");
        assert_eq!(by_tag(&[redis::cmd("TIME")]), vec![vec![0]]);
    }
}
