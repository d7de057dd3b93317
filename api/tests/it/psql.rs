//! The PostgreSQL wire protocol, spoken to by the real `psql` (simple protocol) and by sqlx
//! (extended protocol: prepared statements with parameters).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use sqlx::Connection;
use tributary_api::analyst::SqlLimits;

use tributary_api::analyst::Analyst;
use tributary_schemas::tables::names;

use crate::sql::{add, analyst, contribution, fixture, stopped, table_dir};

/// `psql` from `TRIBUTARY_PG_BIN` (set by scripts/setup.sh) or Debian's postgresql-15.
fn psql_bin() -> PathBuf {
    let dir = std::env::var_os("TRIBUTARY_PG_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let psql = dir.join("psql");
    assert!(
        psql.exists(),
        "{} not found: run `make setup` (installs postgresql-15) or set TRIBUTARY_PG_BIN",
        psql.display()
    );
    psql
}

/// Runs one `psql -c` against the server: unaligned, tuples only, `|` between columns, errors
/// with their SQLSTATE.
async fn psql(port: u16, sql: &str) -> Output {
    tokio::process::Command::new(psql_bin())
        .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", "VERBOSITY=verbose"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "analyst"])
        .args(["-d", "tributary", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true)
        .output()
        .await
        .expect("running psql")
}

fn stdout_lines(o: &Output) -> Vec<String> {
    assert!(
        o.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn refused_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains(needle),
        "expected a refusal containing {needle:?}; status {:?}, stderr: {err}",
        o.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_views_and_writes_are_refused_over_both_protocols() {
    let f = fixture().await;
    // The default timeout (a plain query here takes milliseconds idle, but more than 2 s was
    // seen with another build running); the timeout itself is tried on a second server.
    let limits = SqlLimits {
        memory_bytes: 32 << 20,
        max_rows: 4,
        ..SqlLimits::default()
    };
    let a = analyst(&f, limits.clone()).await;
    let (port, server) = Server::start(&a).await;

    // A view, through psql; the same rows as the analyst gives, and no row cap (4 here
    // applies to HTTP only: the fixture has 6 contributions).
    let board = psql(
        port,
        "SELECT contributor, contributions FROM contributor_leaderboard ORDER BY contributions DESC, contributor",
    )
    .await;
    let lines = stdout_lines(&board);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let top = a
        .query("SELECT contributor, contributions FROM contributor_leaderboard ORDER BY contributions DESC, contributor LIMIT 1")
        .await
        .unwrap();
    let col = |i: usize| {
        arrow::util::display::array_value_to_string(top.batches[0].column(i), 0).unwrap()
    };
    assert_eq!(lines[0], format!("{}|{}", col(0), col(1)));
    let all = stdout_lines(&psql(port, "SELECT contribution_id FROM contributions").await);
    assert_eq!(all.len(), 6, "no row cap over the wire protocol: {all:?}");

    // psql's own catalog queries: `\dt` lists the lake's tables.
    let dt = psql(port, "\\dt").await;
    let listing = stdout_lines(&dt).join("\n");
    assert!(listing.contains("contributions"), "{listing}");

    // Session statements that tools send are answered.
    stdout_lines(&psql(port, "SET statement_timeout = 1000").await);
    stdout_lines(&psql(port, "BEGIN").await);

    // Writes are refused, with SQLSTATE 25006 and a message that says why.
    for sql in [
        "CREATE TABLE x (a INT)",
        "INSERT INTO contributions SELECT * FROM contributions",
        "DELETE FROM contributions",
        "DROP VIEW contributor_leaderboard",
        "CREATE VIEW v AS SELECT 1",
    ] {
        let o = psql(port, sql).await;
        refused_with(&o, "25006");
        refused_with(&o, "only queries are allowed");
    }

    // Past the memory pool: a clean error, and the server keeps serving.
    let o = psql(
        port,
        "SELECT array_agg(value) FROM generate_series(1, 20000000)",
    )
    .await;
    refused_with(&o, "needs more memory than the 32 MiB allowed");
    // Past the timeout (2 s, against minutes): stopped, with PostgreSQL's query_canceled code.
    let short = analyst(
        &f,
        SqlLimits {
            timeout: Duration::from_secs(2),
            ..limits
        },
    )
    .await;
    let (short_port, short_server) = Server::start(&short).await;
    let o = psql(
        short_port,
        "SELECT SUM(a.value * b.value) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
    )
    .await;
    refused_with(&o, "57014");
    // The stopped query is really gone from its runtime (counted, not timed), and the server
    // keeps answering.
    stopped(&short).await;
    let n = stdout_lines(&psql(short_port, "SELECT 6").await);
    assert_eq!(n, vec!["6"]);
    short_server.stop().await;

    // The extended protocol (prepared statements with bound parameters), as drivers use it.
    let url = format!("postgres://analyst@127.0.0.1:{port}/tributary?sslmode=disable");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contributions WHERE datanet_id = $1")
        .bind(1_i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let expected = a
        .query("SELECT COUNT(*) AS n FROM contributions WHERE datanet_id = 1")
        .await
        .unwrap();
    let expected =
        arrow::util::display::array_value_to_string(expected.batches[0].column(0), 0).unwrap();
    assert_eq!(n.to_string(), expected);
    let err = sqlx::query("DELETE FROM contributions WHERE datanet_id = $1")
        .bind(1_i64)
        .execute(&mut conn)
        .await
        .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("25006"), "{db}");
    drop(conn);
    assert_eq!(
        stdout_lines(&psql(port, "SELECT COUNT(*) FROM contributions").await),
        vec!["6"],
        "nothing was deleted"
    );

    server.stop().await;
}

/// The wire-protocol server over an analyst, on a free local port.
struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<tributary_api::Result<()>>,
}

impl Server {
    async fn start(a: &Analyst) -> (u16, Self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tributary_api::pg::serve(listener, a.clone(), async {
            let _ = stopped.await;
        }));
        (port, Self { stop, task })
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

/// What another engine commits when it adds a nullable string column to the Delta table in
/// `dir`: the table's metadata with one more field.
fn add_column(dir: &std::path::Path, name: &str) {
    let log = dir.join("_delta_log");
    let commit = |v: usize| log.join(format!("{v:020}.json"));
    let next = (0..).find(|&v| !commit(v).exists()).unwrap();
    let first = std::fs::read_to_string(commit(0)).unwrap();
    let mut meta: serde_json::Value = first
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a.get("metaData").is_some())
        .expect("the first commit holds the table's metadata");
    let text = meta["metaData"]["schemaString"].as_str().unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(text).unwrap();
    let field =
        serde_json::json!({"name": name, "type": "string", "nullable": true, "metadata": {}});
    schema["fields"].as_array_mut().unwrap().push(field);
    meta["metaData"]["schemaString"] = schema.to_string().into();
    std::fs::write(commit(next), format!("{meta}\n")).unwrap();
}

/// `sql`'s one count, with 0 bound to its one parameter.
async fn count(conn: &mut sqlx::PgConnection, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(0_i64)
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

/// A statement a driver prepared once and runs again (sqlx keeps prepared statements per
/// connection, as JDBC and psycopg do) reads the tables as they are when it runs: rows
/// committed after it was prepared are counted, in a table and through a view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_read_rows_committed_after_they_were_prepared() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let (port, server) = Server::start(&a).await;
    let url = format!("postgres://analyst@127.0.0.1:{port}/tributary?sslmode=disable");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let table = "SELECT COUNT(*) FROM contributions WHERE datanet_id > $1";
    let view = "SELECT COUNT(*) FROM contributor_leaderboard WHERE contributions > $1";
    let mut counts = Vec::new();
    for round in 0..2 {
        if round == 1 {
            let new = [contribution(9, 1, 0xa9, 26)];
            add(&f.lake, names::CONTRIBUTIONS, &new).await;
        }
        let (t, v) = (count(&mut conn, table).await, count(&mut conn, view).await);
        counts.push((t, v));
    }
    let (before, after) = (counts[0], counts[1]);
    assert_eq!(after.0, before.0 + 1, "the table's new row: {counts:?}");
    assert_eq!(
        after.1,
        before.1 + 1,
        "the view's new contributor: {counts:?}"
    );

    // Another engine adds a column: the prepared statements still answer, over its files.
    let ids = "SELECT contribution_id FROM contributions WHERE datanet_id > $1 ORDER BY 1";
    let read = async |conn: &mut sqlx::PgConnection| -> Vec<String> {
        let rows: Vec<(String,)> = sqlx::query_as(ids)
            .bind(0_i64)
            .fetch_all(conn)
            .await
            .unwrap();
        rows.into_iter().map(|(id,)| id).collect()
    };
    let listed = read(&mut conn).await;
    add_column(&table_dir(&f, names::CONTRIBUTIONS), "note");
    assert_eq!(read(&mut conn).await, listed);
    assert_eq!(count(&mut conn, table).await, after.0);
    drop(conn);
    server.stop().await;
}
