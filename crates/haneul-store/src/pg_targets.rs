//! Which PostgreSQL server the store talks to when the URL names several: libpq's multi-host
//! form (`postgres://u@db1:5432,db2:5432/haneul?target_session_attrs=read-write`), which sqlx
//! does not parse. The hosts are tried in order and the first that is acceptable (any server,
//! or only one that takes writes) serves the pool; a watcher keeps checking that it still is and
//! moves the pool to another host when the database fails over (a replica promoted).

use crate::StoreError;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

/// How long one host gets to answer while the hosts are being tried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The hosts of a PostgreSQL URL and what a session must be, as libpq's `target_session_attrs`.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// One set of options per host, in the URL's order.
    pub hosts: Vec<PgConnectOptions>,
    /// `read-write` or `primary`: only a server that takes writes (not a hot standby) will do.
    pub writable: bool,
}

impl Targets {
    /// Parses `url`; errors name the URL's part that is wrong.
    pub fn parse(url: &str) -> Result<Targets, StoreError> {
        let bad = |reason: String| StoreError::invalid("database", reason);
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
            .ok_or_else(|| bad("expected a postgres:// URL".into()))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let mut writable = false;
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("target_session_attrs", value)) => {
                    writable = match value {
                        "any" => false,
                        "read-write" | "primary" => true,
                        other => {
                            return Err(bad(format!(
                                "target_session_attrs `{other}` is not supported; use any, \
                                 read-write or primary"
                            )));
                        }
                    }
                }
                _ if pair.is_empty() => {}
                _ => kept.push(pair),
            }
        }
        let hosts: Vec<&str> = hostlist.split(',').collect();
        if hosts.iter().any(|h| h.is_empty()) {
            return Err(bad(
                "an empty host in the host list; write host[:port],host[:port]".into(),
            ));
        }
        let mut options = Vec::with_capacity(hosts.len());
        for host in hosts {
            let mut single = format!("{scheme}://");
            if let Some(u) = userinfo {
                single.push_str(u);
                single.push('@');
            }
            single.push_str(host);
            single.push_str(path);
            if !kept.is_empty() {
                single.push('?');
                single.push_str(&kept.join("&"));
            }
            let opts = PgConnectOptions::from_str(&single)
                .map_err(|e| bad(format!("host `{host}`: {e}")))?;
            options.push(opts);
        }
        Ok(Targets {
            hosts: options,
            writable,
        })
    }

    /// Whether the plain single-server path serves this URL.
    pub fn is_simple(&self) -> bool {
        self.hosts.len() == 1 && !self.writable
    }

    /// The first host, in order, that answers and is acceptable.
    pub async fn pick(&self) -> Result<PgConnectOptions, StoreError> {
        let mut refusals = Vec::new();
        for host in &self.hosts {
            match self.probe(host).await {
                Ok(()) => return Ok(host.clone()),
                Err(why) => {
                    refusals.push(format!("{}:{}: {why}", host.get_host(), host.get_port()))
                }
            }
        }
        Err(StoreError::invalid(
            "database",
            format!(
                "no {}server among the URL's hosts answered ({})",
                if self.writable { "read-write " } else { "" },
                refusals.join("; ")
            ),
        ))
    }

    /// Connects once to `host` and checks it is acceptable.
    async fn probe(&self, host: &PgConnectOptions) -> Result<(), String> {
        let attempt = async {
            let mut conn = host.connect().await.map_err(|e| e.to_string())?;
            let ok = self.acceptable(&mut conn).await;
            let _ = conn.close().await;
            ok
        };
        tokio::time::timeout(PROBE_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err("no answer in 3 s".into()))
    }

    /// Whether a connected server answers and will do: with `writable`, it must not be
    /// read-only (a hot standby reports `transaction_read_only` on).
    pub async fn acceptable(&self, conn: &mut PgConnection) -> Result<(), String> {
        if !self.writable {
            return conn.ping().await.map_err(|e| e.to_string());
        }
        let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
            .fetch_one(conn)
            .await
            .map_err(|e| e.to_string())?;
        if read_only == "off" {
            Ok(())
        } else {
            Err("read-only (a standby)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_become_one_set_of_options_each() {
        let t = Targets::parse(
            "postgres://haneul:pw@db1:5433,10.0.0.2/centre?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert!(t.writable);
        assert_eq!(t.hosts.len(), 2);
        assert_eq!(
            (t.hosts[0].get_host(), t.hosts[0].get_port()),
            ("db1", 5433)
        );
        assert_eq!(
            (t.hosts[1].get_host(), t.hosts[1].get_port()),
            ("10.0.0.2", 5432)
        );
        assert_eq!(t.hosts[1].get_database(), Some("centre"));
        assert_eq!(t.hosts[1].get_username(), "haneul");
        assert!(!t.is_simple());
    }

    #[test]
    fn one_host_without_attributes_takes_the_plain_path() {
        let t = Targets::parse("postgresql://postgres@127.0.0.1:5432/postgres").unwrap();
        assert!(t.is_simple());
        let any = Targets::parse("postgres://a,b/db?target_session_attrs=any").unwrap();
        assert!(!any.writable && !any.is_simple());
    }

    #[test]
    fn bad_urls_name_what_to_fix() {
        let e = Targets::parse("postgres://a,,b/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty host"), "{e}");
        let e = Targets::parse("postgres://a/db?target_session_attrs=standby")
            .unwrap_err()
            .to_string();
        assert!(e.contains("target_session_attrs `standby`"), "{e}");
        let e = Targets::parse("mysql://a/db").unwrap_err().to_string();
        assert!(e.contains("postgres://"), "{e}");
    }
}
