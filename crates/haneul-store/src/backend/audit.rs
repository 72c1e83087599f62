//! The audit log: a hash chain of every change and decision, appended in the transaction of
//! the change it records (the shared `audit` helpers here), read back and verified from the start.
//! Owns the `audit` table.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// The hash-chained audit log. Part of [`crate::Store`].
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one entry to the audit log for something that changes no other table (a
    /// sign-in, a refused sign-in).
    async fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()>;
    /// Writes a decision that changes no other table (a refused registration, a hold) to the
    /// audit log.
    async fn record_decision(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()>;
    async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    /// Recomputes the hash chain from the start; the first broken link is
    /// [`StoreError::AuditBroken`] naming its entry.
    async fn verify_audit(&self) -> Result<i64>;
    /// The newest audit entry (the chain's head), if any.
    async fn audit_head(&self) -> Result<Option<AuditRecord>>;
}

/// Expands [`AuditStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! audit_store {
    ($store:ty, $db:ty) => {
        fn audit_row(r: &DbRow) -> Result<AuditRecord> {
            Ok(AuditRecord {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                detail: r.try_get("detail")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        }

        /// Appends one entry to the audit chain inside the caller's transaction.
        async fn audit(
            tx: &mut Tx<'_>,
            actor: &Actor,
            action: &str,
            target: &str,
            detail: &str,
            now: i64,
        ) -> Result<()> {
            audit_after(tx, &mut None, actor, action, target, detail, now).await
        }

        /// [`audit`] for a run of entries in one transaction: `tip` carries the chain's last
        /// hash from one entry to the next, so only the first reads it from the table.
        async fn audit_after(
            tx: &mut Tx<'_>,
            tip: &mut Option<String>,
            actor: &Actor,
            action: &str,
            target: &str,
            detail: &str,
            now: i64,
        ) -> Result<()> {
            let prev = match tip.take() {
                Some(h) => h,
                None => sqlx::query_scalar::<_, String>(
                    "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or_default(),
            };
            let detail = &detail_with_reason(detail, actor.reason.as_deref());
            let hash = audit_hash(&prev, now, &actor.name, action, target, detail);
            sqlx::query(
                "INSERT INTO audit (at, actor, action, target, detail, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(now)
            .bind(&actor.name)
            .bind(action)
            .bind(target)
            .bind(detail)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut **tx)
            .await?;
            *tip = Some(hash);
            Ok(())
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn record_audit(
                &self,
                actor: &Actor,
                action: &str,
                target: &str,
                detail: &str,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                audit(&mut tx, actor, action, target, detail, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_decision(
                &self,
                actor: &Actor,
                action: &str,
                target: &str,
                detail: &str,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                audit(&mut tx, actor, action, target, detail, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
                let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit.clamp(1, 10_000))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(audit_row).collect()
            }

            async fn verify_audit(&self) -> Result<i64> {
                let mut prev = String::new();
                let mut after = 0;
                let mut count = 0;
                loop {
                    let page = self.list_audit(after, 1000).await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    for e in &page {
                        let want =
                            audit_hash(&prev, e.at, &e.actor, &e.action, &e.target, &e.detail);
                        if e.prev_hash != prev {
                            return Err(StoreError::AuditBroken {
                                seq: e.seq,
                                reason: "its link to the entry before does not match".into(),
                            });
                        }
                        if e.hash != want {
                            return Err(StoreError::AuditBroken {
                                seq: e.seq,
                                reason: "its contents do not match its hash".into(),
                            });
                        }
                        prev = e.hash.clone();
                        count += 1;
                    }
                }
                Ok(count)
            }

            async fn audit_head(&self) -> Result<Option<AuditRecord>> {
                let row = sqlx::query("SELECT * FROM audit ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(audit_row).transpose()
            }
        }
    };
}

pub(crate) use audit_store;
