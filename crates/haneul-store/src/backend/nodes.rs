//! Nodes: pools, blocks and nodes, their state (up, draining, down and why), heartbeats, what
//! each agent reports about itself (uid, limits, address, container runtime, health) and the fleet
//! summary. A node that is lost or fails its health check ends its attempts here (through
//! [`super::attempts`]'s helpers), so its jobs run again. Owns `pools`, `blocks` and `nodes`.

use crate::Result;
use crate::records::*;
use async_trait::async_trait;

/// The fleet: pools, nodes, heartbeats and what agents report about their nodes. Part of [`crate::Store`].
#[async_trait]
pub trait NodeStore: Send + Sync {
    async fn create_pool(&self, actor: &Actor, p: NewPool, now: i64) -> Result<PoolRecord>;
    async fn list_pools(&self) -> Result<Vec<PoolRecord>>;
    /// Registers a node by name, or updates its inventory and what its agent says of itself when
    /// it exists, and marks it up. A node another agent account registered is refused.
    async fn register_node(&self, actor: &Actor, n: NewNode, now: i64) -> Result<NodeRecord>;
    async fn get_node(&self, id: i64) -> Result<NodeRecord>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Drain or resume a node (admin action).
    async fn set_node_state(
        &self,
        actor: &Actor,
        id: i64,
        state: NodeState,
        now: i64,
    ) -> Result<NodeRecord>;
    /// Records a heartbeat. A node that was down because it was lost comes back up.
    async fn heartbeat(&self, node: i64, now: i64) -> Result<NodeRecord>;
    /// Heartbeats of several nodes in one transaction; `None` for an unknown node.
    async fn heartbeats(&self, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>>;
    /// GPUs by pool and model (allocated, idle, draining, down), the queue per project and the
    /// GPUs held per node, read in one transaction so the figures agree with each other.
    async fn fleet_summary(&self) -> Result<FleetSummary>;
    /// Marks nodes whose last heartbeat is older than `cutoff` as lost, ends their attempts as
    /// node lost and requeues those jobs. Returns the nodes marked.
    async fn mark_lost_nodes(&self, cutoff: i64, now: i64) -> Result<Vec<i64>>;
    /// Records the agent's health check. The first failure (`Some(what)`) drains the node
    /// (`down_reason` `unhealthy`) and ends its live attempts as node lost, requeueing their
    /// jobs (returned), in one transaction. A later pass (`None`) clears it and resumes the node
    /// if the health check drained it.
    async fn report_node_health(
        &self,
        actor: &Actor,
        node: i64,
        failure: Option<&str>,
        now: i64,
    ) -> Result<(NodeRecord, Vec<i64>)>;
}

/// Expands [`NodeStore`] for the backend `$store` on database `$db`, and the helpers of this
/// area, into the backend's module (see `store_impl!`), where the other areas' SQL shares
/// them.
macro_rules! node_store {
    ($store:ty, $db:ty) => {
        fn lending_str(l: Lending) -> &'static str {
            match l {
                Lending::Open => "open",
                Lending::OwnerOnly => "owner-only",
            }
        }

        fn parse_lending(s: &str) -> Result<Lending> {
            match s {
                "open" => Ok(Lending::Open),
                "owner-only" => Ok(Lending::OwnerOnly),
                o => Err(StoreError::Corrupt(format!("unknown lending `{o}`"))),
            }
        }

        fn pool_row(r: &DbRow) -> Result<PoolRecord> {
            let lending: String = r.try_get("lending")?;
            Ok(PoolRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                owner: r.try_get("owner")?,
                lending: parse_lending(&lending)?,
            })
        }

        const NODE_COLS: &str = "n.id, n.name, b.pool_id, n.block_id, b.name AS block, \
            n.gpu_model, n.gpus, n.gpu_memory_mib, n.nvlink_domain, n.cpu_milli, n.memory_mib, \
            n.state, n.down_reason, n.agent_user, n.last_heartbeat, n.limits, n.address, n.health, \
            n.container_runtime FROM nodes n JOIN blocks b ON b.id = n.block_id";

        fn node_row(r: &DbRow) -> Result<NodeRecord> {
            let model: String = r.try_get("gpu_model")?;
            let state: String = r.try_get("state")?;
            Ok(NodeRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                pool_id: r.try_get("pool_id")?,
                block_id: r.try_get("block_id")?,
                block: r.try_get("block")?,
                gpu_model: GpuModel::new(&model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                gpus: r.try_get("gpus")?,
                gpu_memory_mib: r.try_get("gpu_memory_mib")?,
                nvlink_domain: r.try_get("nvlink_domain")?,
                cpu_milli: r.try_get("cpu_milli")?,
                memory_mib: r.try_get("memory_mib")?,
                state: parse_enum(&state, NodeState::parse, "node state")?,
                down_reason: r.try_get("down_reason")?,
                agent_user: r.try_get("agent_user")?,
                last_heartbeat: r.try_get("last_heartbeat")?,
                limits: r.try_get("limits")?,
                address: r.try_get("address")?,
                health: r.try_get("health")?,
                container_runtime: r.try_get("container_runtime")?,
            })
        }

        /// Records heartbeats of `nodes` in the caller's transaction: three statements whatever
        /// their number (a batch of a thousand is no longer two thousand round trips on
        /// PostgreSQL). A node that was down because it was lost comes back up, with a
        /// `FleetChanged` event. `None` for an unknown node.
        /// `nodes`' rows, locked for update in id order. Every statement that locks several
        /// nodes' rows locks them this way (`mark_lost_nodes` too), so heartbeats, which run
        /// outside the writers' lock, never wait on another writer in a cycle.
        fn nodes_in_order(param: u8) -> String {
            format!(
                "id IN (SELECT id FROM nodes WHERE {} ORDER BY id{})",
                in_ids("id", param),
                <$db as crate::backend::IdList>::FOR_UPDATE
            )
        }

        /// Heartbeats `nodes` at `now`, bringing any lost one back (with its event): needs the
        /// writers' lock.
        async fn beat(tx: &mut Tx<'_>, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>> {
            let mut revived: Vec<i64> = sqlx::query_scalar(&format!(
                "UPDATE nodes SET state = 'up', down_reason = NULL \
                 WHERE {} AND state = 'down' AND down_reason = 'lost' RETURNING id",
                nodes_in_order(1)
            ))
            .bind(id_list(nodes))
            .fetch_all(&mut **tx)
            .await?;
            revived.sort_unstable();
            for &node in &revived {
                event(tx, EventKind::FleetChanged, None, None, Some(node), "back", now).await?;
            }
            refresh(tx, nodes, now).await
        }

        /// Writes `nodes`' heartbeat time and reads them back (`None` for an unknown node).
        async fn refresh(tx: &mut Tx<'_>, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>> {
            sqlx::query(&format!(
                "UPDATE nodes SET last_heartbeat = $1 WHERE {}",
                nodes_in_order(2)
            ))
            .bind(now)
            .bind(id_list(nodes))
            .execute(&mut **tx)
            .await?;
            let rows = sqlx::query(&format!("SELECT {NODE_COLS} WHERE {}", in_ids("n.id", 1)))
                .bind(id_list(nodes))
                .fetch_all(&mut **tx)
                .await?;
            let mut known = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                let n = node_row(r)?;
                known.insert(n.id, n);
            }
            Ok(nodes.iter().map(|id| known.get(id).cloned()).collect())
        }

        fn is_lost(n: &NodeRecord) -> bool {
            n.state == NodeState::Down && n.down_reason.as_deref() == Some("lost")
        }

        impl $store {
            /// Heartbeats `nodes`. One that brings no node back from lost appends no event, so
            /// it needs no place in the writers' sequence: it runs without the writers' lock
            /// (its commit's flush can then be shared with others'; SQLite does not flush it
            /// at all, see its `beat_fresh`). `mark_lost_nodes` still
            /// orders against it by the nodes' row locks: it waits for a heartbeat's row and
            /// then finds it fresh, or a heartbeat that waited for it reads its node lost and
            /// starts again holding the lock, to bring the node back with its event.
            async fn beat_nodes(&self, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>> {
                if let Some(out) = self.beat_fresh(nodes, now).await? {
                    return Ok(out);
                }
                let mut tx = self.begin_write().await?;
                let out = beat(&mut tx, nodes, now).await?;
                tx.commit().await?;
                Ok(out)
            }
        }

        #[async_trait]
        impl NodeStore for $store {
            async fn create_pool(&self, actor: &Actor, p: NewPool, now: i64) -> Result<PoolRecord> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO pools (name, owner, lending) VALUES ($1, $2, $3) RETURNING *",
                )
                .bind(&p.name)
                .bind(p.owner)
                .bind(lending_str(p.lending))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique(e, "name", format!("pool `{}`", p.name)))?;
                let rec = pool_row(&row)?;
                audit(
                    &mut tx,
                    actor,
                    "pool.create",
                    &format!("pool/{}", rec.id),
                    &serde_json::to_string(&p.name)?,
                    now,
                )
                .await?;
                event(&mut tx, EventKind::FleetChanged, None, None, None, "pool", now).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn list_pools(&self) -> Result<Vec<PoolRecord>> {
                let rows = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(pool_row).collect()
            }

            async fn register_node(&self, actor: &Actor, n: NewNode, now: i64) -> Result<NodeRecord> {
                // Everything a registration writes is one transaction of few statements: a
                // swarm of agents registering at once queues for the writers' lock, so each
                // statement more under it is paid once per node.
                let mut tx = self.begin_write().await?;
                // The block, in its pool, in one statement; no row when the pool is missing.
                // (SQLite needs the WHERE to read `ON CONFLICT` as the upsert's.)
                let block: Option<(i64, i64)> = sqlx::query_as(
                    "INSERT INTO blocks (pool_id, name) SELECT id, $2 FROM pools WHERE name = $1 \
                     ON CONFLICT (pool_id, name) DO UPDATE SET name = excluded.name \
                     RETURNING id, pool_id",
                )
                .bind(&n.pool)
                .bind(&n.block)
                .fetch_optional(&mut *tx)
                .await?;
                let (block, pool) = match block {
                    Some(b) => b,
                    // Pools are made by operators (with their owner and lending terms); only the
                    // `default` pool, which a centre of one pool never names, comes by itself.
                    None if n.pool != DEFAULT_POOL => {
                        return Err(StoreError::Invalid {
                            field: "pool",
                            reason: format!(
                                "no pool `{}`; an operator creates it first (`haneul pool create`)",
                                n.pool
                            ),
                        });
                    }
                    None => {
                        let pool: i64 = sqlx::query_scalar(
                            "INSERT INTO pools (name, owner, lending) VALUES ($1, NULL, 'open') \
                             RETURNING id",
                        )
                        .bind(&n.pool)
                        .fetch_one(&mut *tx)
                        .await?;
                        let block = sqlx::query_scalar(
                            "INSERT INTO blocks (pool_id, name) VALUES ($1, $2) RETURNING id",
                        )
                        .bind(pool)
                        .bind(&n.block)
                        .fetch_one(&mut *tx)
                        .await?;
                        (block, pool)
                    }
                };
                // A node another agent account registered is not taken over: the update is
                // skipped, and no row comes back. The row comes back whole, with the audit
                // chain's tip (read after the writers' lock was granted, so it is the last).
                let row = sqlx::query(
                    "INSERT INTO nodes (name, block_id, gpu_model, gpus, gpu_memory_mib, \
                     nvlink_domain, cpu_milli, memory_mib, state, down_reason, agent_user, \
                     last_heartbeat, limits, address, container_runtime, agent_uid) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'up', NULL, $9, $10, $11, $12, $13, \
                     $14) \
                     ON CONFLICT (name) DO UPDATE SET block_id = excluded.block_id, \
                     gpu_model = excluded.gpu_model, gpus = excluded.gpus, \
                     gpu_memory_mib = excluded.gpu_memory_mib, \
                     nvlink_domain = excluded.nvlink_domain, cpu_milli = excluded.cpu_milli, \
                     memory_mib = excluded.memory_mib, \
                     state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'up' END, \
                     down_reason = CASE WHEN nodes.state = 'draining' THEN nodes.down_reason END, \
                     agent_user = excluded.agent_user, \
                     last_heartbeat = excluded.last_heartbeat, limits = excluded.limits, \
                     address = excluded.address, container_runtime = excluded.container_runtime, \
                     agent_uid = excluded.agent_uid \
                     WHERE nodes.agent_user IS NULL OR excluded.agent_user IS NULL \
                     OR nodes.agent_user = excluded.agent_user \
                     RETURNING id, name, CAST($15 AS BIGINT) AS pool_id, block_id, \
                     CAST($16 AS TEXT) AS block, gpu_model, gpus, gpu_memory_mib, \
                     nvlink_domain, cpu_milli, memory_mib, state, down_reason, agent_user, \
                     last_heartbeat, limits, address, health, container_runtime, \
                     (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) AS audit_tip",
                )
                .bind(&n.name)
                .bind(block)
                .bind(n.gpu_model.as_str())
                .bind(n.gpus)
                .bind(n.gpu_memory_mib)
                .bind(n.nvlink_domain)
                .bind(n.cpu_milli)
                .bind(n.memory_mib)
                .bind(n.agent_user)
                .bind(now)
                .bind(&n.agent.limits)
                .bind(&n.agent.address)
                .bind(&n.agent.container_runtime)
                .bind(n.agent.uid)
                .bind(pool)
                .bind(&n.block)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::conflict(
                        "name",
                        format!("node `{}` is registered by another agent", n.name),
                    ));
                };
                let rec = node_row(&row)?;
                let prev: Option<String> = row.try_get("audit_tip")?;
                let prev = prev.unwrap_or_default();
                let detail = detail_with_reason(
                    &serde_json::json!({"name": rec.name, "gpu_model": n.gpu_model, "gpus": n.gpus})
                        .to_string(),
                    actor.reason.as_deref(),
                );
                let target = format!("node/{}", rec.id);
                let hash = audit_hash(&prev, now, &actor.name, "node.register", &target, &detail);
                let entry = crate::backend::AuditRow {
                    at: now,
                    actor: actor.name.clone(),
                    action: "node.register".into(),
                    target,
                    detail,
                    prev_hash: prev,
                    hash,
                };
                let event = crate::backend::EventRow {
                    at: now,
                    kind: EventKind::FleetChanged.as_str(),
                    job: None,
                    attempt: None,
                    node: Some(rec.id),
                    detail: "register".into(),
                };
                insert_log(&mut tx, &[event], &[entry]).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_node(&self, id: i64) -> Result<NodeRecord> {
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", id))?;
                node_row(&row)
            }

            async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
                let rows = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter().map(node_row).collect()
            }

            async fn set_node_state(
                &self,
                actor: &Actor,
                id: i64,
                state: NodeState,
                now: i64,
            ) -> Result<NodeRecord> {
                if state == NodeState::Down {
                    return Err(StoreError::invalid(
                        "state",
                        "a node goes down by losing its agent; drain it instead",
                    ));
                }
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE nodes SET state = $1, \
                     down_reason = CASE WHEN state = 'down' THEN down_reason END \
                     WHERE id = $2 AND (state <> 'down' OR $1 = 'draining')",
                )
                .bind(state.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", id))?;
                let rec = node_row(&row)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::conflict(
                        "state",
                        format!("node `{}` is down; it comes back up when its agent returns", rec.name),
                    ));
                }
                audit(&mut tx, actor, &format!("node.{state}"), &format!("node/{id}"), "{}", now)
                    .await?;
                event(&mut tx, EventKind::FleetChanged, None, None, Some(id), state.as_str(), now)
                    .await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn heartbeat(&self, node: i64, now: i64) -> Result<NodeRecord> {
                self.beat_nodes(&[node], now)
                    .await?
                    .pop()
                    .flatten()
                    .ok_or_else(|| StoreError::not_found("node", node))
            }

            async fn heartbeats(&self, nodes: &[i64], now: i64) -> Result<Vec<Option<NodeRecord>>> {
                self.beat_nodes(nodes, now).await
            }

            async fn fleet_summary(&self) -> Result<FleetSummary> {
                let mut tx = self.begin_read().await?;
                let pools = sqlx::query("SELECT * FROM pools ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(pool_row)
                    .collect::<Result<Vec<_>>>()?;
                let nodes = sqlx::query(&format!("SELECT {NODE_COLS} ORDER BY n.id"))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(node_row)
                    .collect::<Result<Vec<_>>>()?;
                let live: Vec<(String,)> = sqlx::query_as(
                    "SELECT placement FROM attempts \
                     WHERE state IN ('assigned', 'running', 'stopping') ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let live = live
                    .iter()
                    .map(|(p,)| serde_json::from_str::<Placement>(p))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let jobs: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT project_id, state, spec FROM jobs \
                     WHERE state IN ('queued', 'running', 'stopping') ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let jobs = jobs
                    .iter()
                    .map(|(p, state, spec)| {
                        Ok((
                            *p,
                            parse_enum(state, JobState::parse, "job state")?,
                            serde_json::from_str::<JobSpec>(spec)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(FleetSummary::build(&pools, &nodes, &live, &jobs))
            }

            async fn mark_lost_nodes(&self, cutoff: i64, now: i64) -> Result<Vec<i64>> {
                let mut tx = self.begin_write().await?;
                let mut lost: Vec<i64> = sqlx::query_scalar(
                    &format!(
                        "UPDATE nodes SET state = 'down', down_reason = 'lost' WHERE id IN \
                         (SELECT id FROM nodes WHERE state <> 'down' AND last_heartbeat < $1 \
                         ORDER BY id{}) RETURNING id",
                        <$db as crate::backend::IdList>::FOR_UPDATE
                    ),
                )
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?;
                // RETURNING's order is not promised: the nodes' events and audit entries go in
                // id order.
                lost.sort_unstable();
                for &node in &lost {
                    requeue_node_attempts(&mut tx, node, now).await?;
                    audit(&mut tx, &Actor::system("controller"), "node.lost", &format!("node/{node}"), "{}", now)
                        .await?;
                    event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "lost", now)
                        .await?;
                }
                tx.commit().await?;
                Ok(lost)
            }

            async fn report_node_health(
                &self,
                actor: &Actor,
                node: i64,
                failure: Option<&str>,
                now: i64,
            ) -> Result<(NodeRecord, Vec<i64>)> {
                let mut tx = self.begin_write().await?;
                let before = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("node", node))?;
                let before = node_row(&before)?;
                let mut requeued = Vec::new();
                match failure {
                    Some(what) => {
                        sqlx::query("UPDATE nodes SET health = $1 WHERE id = $2")
                            .bind(what)
                            .bind(node)
                            .execute(&mut *tx)
                            .await?;
                        // The first failing report drains and requeues; repeats just refresh
                        // what failed, unless the node is up again meanwhile (lost while
                        // unhealthy, then back), which drains it again.
                        if before.health.is_none() || before.state == NodeState::Up {
                            // The same path as a lost node.
                            requeued.extend(requeue_node_attempts(&mut tx, node, now).await?);
                            let detail = serde_json::json!({"failure": what}).to_string();
                            audit(&mut tx, actor, "node.unhealthy", &format!("node/{node}"), &detail, now)
                                .await?;
                            if before.state == NodeState::Up {
                                sqlx::query(
                                    "UPDATE nodes SET state = 'draining', down_reason = 'unhealthy' \
                                     WHERE id = $1",
                                )
                                .bind(node)
                                .execute(&mut *tx)
                                .await?;
                                event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "draining", now)
                                    .await?;
                            }
                        }
                    }
                    None if before.health.is_some() => {
                        sqlx::query("UPDATE nodes SET health = NULL WHERE id = $1")
                            .bind(node)
                            .execute(&mut *tx)
                            .await?;
                        audit(&mut tx, actor, "node.healthy", &format!("node/{node}"), "{}", now)
                            .await?;
                        // Only a drain the health check made is undone; an operator's stays.
                        let resumed = sqlx::query(
                            "UPDATE nodes SET state = 'up', down_reason = NULL \
                             WHERE id = $1 AND state = 'draining' AND down_reason = 'unhealthy'",
                        )
                        .bind(node)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if resumed > 0 {
                            event(&mut tx, EventKind::FleetChanged, None, None, Some(node), "up", now)
                                .await?;
                        }
                    }
                    None => {}
                }
                let row = sqlx::query(&format!("SELECT {NODE_COLS} WHERE n.id = $1"))
                    .bind(node)
                    .fetch_one(&mut *tx)
                    .await?;
                let rec = node_row(&row)?;
                tx.commit().await?;
                Ok((rec, requeued))
            }
        }
    };
}

pub(crate) use node_store;
