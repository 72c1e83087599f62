//! A server in the test process: the real router and controller over a real store, driven
//! request by request (no sockets) and step by step (no timers).

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use haneul_server::controller::{Controller, ControllerConfig, Signals};
use haneul_server::metrics::Metrics;
use haneul_server::{AppState, app};
use haneul_store::{SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub struct Harness {
    pub app: axum::Router,
    /// The state the app was built from ([`Harness::with_state`] rebuilds it).
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub controller: Controller,
    pub admin: String,
    _dir: Option<tempfile::TempDir>,
    _db: Option<haneul_store::testing::TestDb>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("h.db")).await.unwrap());
        let path = dir.path().to_path_buf();
        Self::with(store, &path, Some(dir), None).await
    }

    pub async fn postgres() -> Harness {
        let db = haneul_store::testing::TestDb::create().await;
        let store: Arc<dyn Store> =
            Arc::new(haneul_store::PostgresStore::open(db.url()).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        Self::with(store, &path, Some(dir), Some(db)).await
    }

    async fn with(
        store: Arc<dyn Store>,
        data: &std::path::Path,
        dir: Option<tempfile::TempDir>,
        db: Option<haneul_store::testing::TestDb>,
    ) -> Harness {
        haneul_server::bootstrap(
            store.as_ref(),
            data,
            haneul_server::identity::IdRange::USERS,
        )
        .await
        .unwrap();
        let admin = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let signals = Signals::new();
        let metrics = Arc::new(Metrics::new());
        let controller = Controller::new(
            store.clone(),
            ControllerConfig {
                holder: "test".into(),
                lease_ttl: Duration::from_secs(30),
                tick: Duration::from_millis(10),
                node_timeout: Duration::from_secs(30),
                policy: haneul_sched::Policy::default(),
            },
            signals.clone(),
            metrics.clone(),
        );
        let state = AppState::new(store.clone(), signals, metrics, 5_000);
        Harness {
            app: app(state.clone()),
            state,
            store,
            controller,
            admin,
            _dir: dir,
            _db: db,
        }
    }

    /// The same server with its state changed by `f` (a metrics token, session rules...).
    pub fn with_state(mut self, f: impl FnOnce(&mut AppState)) -> Harness {
        f(&mut self.state);
        self.app = app(self.state.clone());
        self
    }

    /// The database URL (PostgreSQL) or file (SQLite), for tests that reach under the API.
    pub fn database(&self) -> String {
        match (&self._db, &self._dir) {
            (Some(db), _) => db.url().to_string(),
            (None, Some(dir)) => format!("sqlite://{}", dir.path().join("h.db").display()),
            (None, None) => String::new(),
        }
    }

    /// The portal session a browser holding `token` gets by signing in on `host`: the
    /// cookie's session id. A value that does not sign in (a junk or revoked token) comes back
    /// as it is, to be sent as a cookie that is no session.
    pub async fn portal_session(&self, token: &str, host: &str) -> String {
        let req = Request::builder()
            .method("POST")
            .uri("/portal/signin")
            .header("host", host)
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("haneul_session="))
            .and_then(|c| c.split(';').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| token.to_string())
    }

    /// One request; the answer's status and JSON body (`null` when empty or not JSON).
    pub async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let raw = body.map(|b| b.to_string().into_bytes());
        self.call_raw(token, method, path, raw).await
    }

    pub async fn call_raw(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// `call` that must answer `want`; returns the body.
    pub async fn ok(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (status, v) = self.call(Some(token), method, path, body).await;
        assert_eq!(status.as_u16(), want, "{method} {path}: {v}");
        v
    }

    /// Creates a user and returns (id, token).
    pub async fn user(
        &self,
        name: &str,
        role: &str,
        org: Option<i64>,
        projects: &[i64],
    ) -> (i64, String) {
        let u = self
            .ok(
                &self.admin,
                "POST",
                "/v1/users",
                Some(json!({"name": name, "role": role, "org": org, "projects": projects})),
                201,
            )
            .await;
        let id = u["id"].as_i64().unwrap();
        let t = self
            .ok(
                &self.admin,
                "POST",
                "/v1/tokens",
                Some(json!({"user": id, "name": "test"})),
                201,
            )
            .await;
        (id, t["secret"].as_str().unwrap().to_string())
    }

    pub async fn org(&self, name: &str) -> i64 {
        self.ok(
            &self.admin,
            "POST",
            "/v1/orgs",
            Some(json!({"name": name, "country": "KR"})),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn project(&self, org: i64, name: &str) -> i64 {
        self.ok(
            &self.admin,
            "POST",
            "/v1/projects",
            Some(json!({"org": org, "name": name})),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    /// Registers a node of 8 H200 as the agent holding `token`; returns its id.
    pub async fn node(&self, token: &str, name: &str) -> i64 {
        self.ok(
            token,
            "POST",
            "/v1/agent/register",
            Some(json!({"name": name, "gpu_model": "H200", "gpus": 8,
                        "cpu_milli": 64000, "memory_mib": 1000000})),
            200,
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn submit(&self, token: &str, project: i64, gpus: u32) -> i64 {
        self.ok(
            token,
            "POST",
            "/v1/jobs",
            Some(
                json!({"project": project, "command": ["python", "train.py"],
                        "gpus_per_task": gpus}),
            ),
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn step(&mut self) {
        self.controller.step().await.unwrap();
    }

    pub async fn job_state(&self, id: i64) -> String {
        let v = self
            .ok(&self.admin, "GET", &format!("/v1/jobs/{id}"), None, 200)
            .await;
        v["job"]["state"].as_str().unwrap().to_string()
    }
}
