//! What a statement's trip to SQLite's connection thread costs, apart from SQLite's own work.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement, `BEGIN` and
//! `COMMIT` is sent there and its answer sent back, two thread switches at least. This writes
//! the same small transaction (four one-row inserts) two ways on one connection, with the
//! flush turned off so that only CPU is measured: statement by statement, as the store does
//! (six trips), and as one multi-statement text (one trip), which is what running a whole
//! write transaction on the connection's thread would cost. It prints the wall time and the
//! process's CPU per transaction for each, alternated over several rounds.
//!
//! ```text
//! cargo run --release -p haneul-store --example handoffs -- [TRANSACTIONS] [ROUNDS]
//! ```

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::time::Instant;

/// CPU time of this process so far, user and system, in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given, and RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(3000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("handoffs.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    const INSERT: &str = "INSERT INTO t (a, b) VALUES ($1, $2)";
    for round in 1..=rounds {
        let cpu = cpu_seconds();
        let wall = Instant::now();
        for i in 0..count {
            let mut tx = pool.begin().await?;
            for k in 0..4 {
                sqlx::query(INSERT)
                    .bind("job")
                    .bind((i * 4 + k) as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        let per_statement = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);

        let cpu = cpu_seconds();
        let wall = Instant::now();
        for i in 0..count {
            let values: Vec<String> = (0..4)
                .map(|k| format!("INSERT INTO t (a, b) VALUES ('job', {});", i * 4 + k))
                .collect();
            let text = format!("BEGIN; {} COMMIT;", values.concat());
            sqlx::raw_sql(&text).execute(&pool).await?;
        }
        let one_call = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);

        let per = |s: f64| s * 1e6 / count as f64;
        println!(
            "round {round}: {count} transactions; statement by statement {:.0} us wall, {:.0} us CPU each; \
             one call {:.0} us wall, {:.0} us CPU each",
            per(per_statement.0),
            per(per_statement.1),
            per(one_call.0),
            per(one_call.1),
        );
    }
    Ok(())
}
