//! The controller's view: the snapshot it rebuilds its engine from, the event stream it tails
//! by sequence number, and the leader lease that fences a deposed leader. Owns the `events` and
//! `leases` tables (every area appends events through the shared `event` helper).

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// The controller's snapshot, the event stream and the leader lease. Part of [`crate::Store`].
#[async_trait]
pub trait ControllerStore: Send + Sync {
    /// Everything the controller needs to rebuild its engine, consistent as of `cursor`.
    async fn snapshot(&self) -> Result<Snapshot>;
    /// Events after `cursor`, oldest first.
    async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<EventRecord>>;
    /// Takes or renews the named lease for `holder` until `now + ttl_ms`. Returns the epoch while
    /// held: it grows by one each time the lease changes hands (a holder renewing late, when no
    /// one took the lease meanwhile, keeps its epoch).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<Option<i64>>;
    /// Gives the lease up (clean shutdown), so a standby need not wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Who holds the named lease at `now`, if anyone (a standby names the leader with it).
    async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>>;
}

/// Expands [`ControllerStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! controller_store {
    ($store:ty, $db:ty) => {
        fn event_row(r: &DbRow) -> Result<EventRecord> {
            let kind: String = r.try_get("kind")?;
            Ok(EventRecord {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                kind: parse_enum(&kind, EventKind::parse, "event kind")?,
                job_id: r.try_get("job_id")?,
                attempt_id: r.try_get("attempt_id")?,
                node_id: r.try_get("node_id")?,
                detail: r.try_get("detail")?,
            })
        }

        #[async_trait]
        impl ControllerStore for $store {
            async fn snapshot(&self) -> Result<Snapshot> {
                let mut tx = self.begin_read().await?;
                let cursor: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
                let pools = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(pool_row)
                    .collect::<Result<_>>()?;
                let nodes = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(node_row)
                    .collect::<Result<_>>()?;
                let orgs = sqlx::query("SELECT * FROM orgs ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(org_row)
                    .collect::<Result<_>>()?;
                let projects = sqlx::query("SELECT * FROM projects ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(project_row)
                    .collect::<Result<_>>()?;
                let queued = sqlx::query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(job_row)
                    .collect::<Result<_>>()?;
                let live = sqlx::query(
                    "SELECT * FROM attempts WHERE state IN ('assigned', 'running', 'stopping') \
                     ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut running = Vec::with_capacity(live.len());
                for r in &live {
                    let a = attempt_row(r)?;
                    running.push((job_in(&mut tx, a.job_id).await?, a));
                }
                Ok(Snapshot {
                    cursor: cursor.unwrap_or(0),
                    pools,
                    nodes,
                    orgs,
                    projects,
                    queued,
                    running,
                })
            }

            async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(cursor)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(event_row).collect()
            }

            async fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                ttl_ms: i64,
                now: i64,
            ) -> Result<Option<i64>> {
                let mut tx = self.begin_write().await?;
                let epoch: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     epoch = CASE WHEN leases.holder = excluded.holder \
                     THEN leases.epoch ELSE leases.epoch + 1 END, \
                     expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4 \
                     RETURNING epoch",
                )
                .bind(name)
                .bind(holder)
                .bind(now + ttl_ms)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(epoch)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT holder FROM leases WHERE name = $1 AND expires_at > $2",
                )
                .bind(name)
                .bind(now)
                .fetch_optional(&self.read)
                .await?)
            }
        }
    };
}

pub(crate) use controller_store;
