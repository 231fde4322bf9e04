//! Benchmark: a PostgreSQL table → a Kafka topic, side by side in one run (see bench/README.md):
//!
//! - **bare sqlx loop** (the limit): `SELECT * … WHERE id > $1 ORDER BY id LIMIT 1000` until the
//!   table is read, rows fetched and dropped;
//! - **Sluice**: a release `sluice` worker running the JDBC source in `incrementing` mode (one
//!   task), JSON values without schemas, into a 4-partition topic; at `batch.max.rows` 100 (the
//!   default) and 1000;
//! - **psycopg loop** (the hand-written alternative): `bench/python/jdbc_psycopg_baseline.py`,
//!   pages of 1000 by id, each row produced as JSON with confluent-kafka.
//!
//! All read the same table of N rows with 20 columns (integers, numerics, floats, text, timestamps,
//! a bool, a date, a uuid) in one PostgreSQL server. CPU seconds per million rows of each
//! contender's own process for its work only (the loops measure themselves after start-up; the
//! worker from the connector's creation until the topic holds every row).
//!
//! Then the end-to-end lag of a row inserted while the connector runs (insert → read from the
//! topic), p50 and p99 of 200 rows inserted 50 ms apart once a first row has arrived, with the
//! default `poll.interval.ms` (5000) and with 100 ms.
//!
//! usage: sluice-jdbc-bench [rows]

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use serde_json::json;
use sluice_bench::kinesis::{Run, child_run, table};
use sluice_bench::{
    Killed, Result, cpu_seconds, create_connector, create_topic, free_port, lag_consumer, quantile,
    start_broker, wait_for_records, wait_healthy, worker_command,
};
use sluice_tests::postgres::Postgres;
use sqlx::Row;

const TABLE: &str = "bench_rows";

fn table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (id bigserial PRIMARY KEY, customer int4 NOT NULL, amount numeric(12,2),
           quantity int2, price float8, discount float4, sku text, name text, category text,
           country text, city text, note text, created_at timestamptz NOT NULL DEFAULT now(),
           updated_at timestamptz, shipped bool, ship_date date, warehouse int8, score float8,
           tracking uuid, channel varchar(16))"
    )
}

async fn fill(pool: &sqlx::PgPool, n: u64) -> Result<()> {
    sqlx::raw_sql(&table_sql(TABLE)).execute(pool).await?;
    let mut done = 0;
    while done < n {
        let upto = (done + 100_000).min(n);
        sqlx::query(&format!(
            "INSERT INTO {TABLE} (customer, amount, quantity, price, discount, sku, name, category,
               country, city, note, updated_at, shipped, ship_date, warehouse, score, tracking, channel)
             SELECT g % 5000, (g % 100000) / 100.0, (g % 20)::int2, (g % 997) / 7.0, 0.15,
               'SKU-' || g, 'Product number ' || g, 'category-' || (g % 40), 'DE', 'Berlin',
               'a note of some length about row ' || g, now(), g % 2 = 0, DATE '2026-12-01' + (g % 30)::int,
               g * 17, (g % 1000) / 1000.0, md5(g::text)::uuid, 'web'
             FROM generate_series($1::int8, $2::int8) AS g"
        ))
        .bind(done as i64 + 1)
        .bind(upto as i64)
        .execute(pool)
        .await?;
        done = upto;
    }
    sqlx::raw_sql(&format!("VACUUM ANALYZE {TABLE}"))
        .execute(pool)
        .await?;
    Ok(())
}

/// The bare loop, in a child process so that its CPU is its own.
async fn bare(url: &str, n: u64) -> Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let (started, cpu0) = (Instant::now(), cpu_seconds(std::process::id())?);
    let (mut last, mut rows) = (0i64, 0u64);
    let sql = format!("SELECT * FROM {TABLE} WHERE id > $1 ORDER BY id LIMIT 1000");
    loop {
        let page = sqlx::query(&sql).bind(last).fetch_all(&pool).await?;
        let Some(end) = page.last() else { break };
        last = end.try_get(0)?;
        rows += page.len() as u64;
    }
    if rows != n {
        return Err(format!("read {rows} rows, not {n}").into());
    }
    let cpu = cpu_seconds(std::process::id())? - cpu0;
    println!(
        "{}",
        json!({"wall": started.elapsed().as_secs_f64(), "cpu": cpu})
    );
    Ok(())
}

fn source(
    pg: &Postgres,
    name: &str,
    table: &str,
    topic_prefix: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut config = json!({
        "connector.class": "JdbcSource", "tasks.max": "1", "mode": "incrementing",
        "connection.url": format!("jdbc:postgresql://127.0.0.1:{}/postgres?user=postgres", pg.port),
        "table.whitelist": table, "topic.prefix": topic_prefix,
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": name, "config": config})
}

async fn through_sluice(bootstrap: &str, pg: &Postgres, n: u64, batch: u32) -> Result<Run> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("jbench-{batch}-{}", std::process::id());
    let prefix = format!("{id}-");
    let topic = format!("{prefix}{TABLE}");
    create_topic(bootstrap, &topic, 4).await?;
    let worker = Killed(worker_command(bootstrap, &id, port)?.spawn()?);
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let config = source(
        pg,
        &id,
        TABLE,
        &prefix,
        json!({"batch.max.rows": batch.to_string()}),
    );
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    create_connector(&http, port, &config).await?;
    wait_for_records(bootstrap, &topic, 4, n, Duration::from_secs(1800)).await?;
    Ok(Run {
        name: format!("Sluice JDBC source (worker process, batch.max.rows {batch})"),
        records: n,
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid)? - cpu0,
    })
}

/// p50 and p99 ms from a row's insert to its arrival from the topic, `poll.interval.ms` `poll`.
async fn lag(bootstrap: &str, pg: &Postgres, db: &sqlx::PgPool, poll: &str) -> Result<(f64, f64)> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("jlag-{poll}-{}", std::process::id());
    let table = format!("lag_{poll}");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, inserted_ms int8 NOT NULL)"
    ))
    .execute(db)
    .await?;
    let prefix = format!("{id}-");
    let topic = format!("{prefix}{table}");
    create_topic(bootstrap, &topic, 1).await?;
    let _worker = Killed(worker_command(bootstrap, &id, port)?.spawn()?);
    wait_healthy(&http, port).await?;
    create_connector(
        &http,
        port,
        &source(pg, &id, &table, &prefix, json!({"poll.interval.ms": poll})),
    )
    .await?;
    let consumer = lag_consumer(bootstrap, &format!("{id}-reader"), &topic)?;
    // One row first, so the timed rows meet a running task (not its start-up).
    sqlx::raw_sql(&format!("INSERT INTO {table} (inserted_ms) VALUES (0)"))
        .execute(db)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(100)));
        if matches!(message, Some(Ok(_))) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the first row did not arrive within 60 s".into());
        }
    }
    const ROWS: usize = 200;
    let insert = {
        let db = db.clone();
        let sql = format!(
            "INSERT INTO {table} (inserted_ms) VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::int8)"
        );
        tokio::spawn(async move {
            for _ in 0..ROWS {
                sqlx::query(&sql).execute(&db).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, sqlx::Error>(())
        })
    };
    let mut lags = Vec::with_capacity(ROWS);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lags.len() < ROWS && Instant::now() < deadline {
        let message = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(100)));
        if let Some(Ok(m)) = message {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or(b"null"))?;
            let inserted = value["inserted_ms"].as_i64().ok_or("no inserted_ms")?;
            lags.push((now_ms - inserted) as f64);
        }
    }
    insert.await??;
    if lags.len() < ROWS {
        return Err(format!("{} of {ROWS} rows arrived", lags.len()).into());
    }
    let (p50, p99) = (quantile(&mut lags, 0.5), quantile(&mut lags, 0.99));
    Ok((p50, p99))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare") {
        return bare(&args[2], args[3].parse()?).await;
    }
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let pg = Postgres::start();
    let db = pg.pool().await;
    eprintln!("filling {n} rows ...");
    fill(&db, n).await?;

    eprintln!("bare sqlx loop ...");
    let bare = child_run(
        "bare sqlx read loop (rows dropped)",
        n,
        Command::new(std::env::current_exe()?).args(["bare", &pg.url(), &n.to_string()]),
    )?;
    eprintln!("sluice, batch.max.rows 100 ...");
    let sluice_100 = through_sluice(&bootstrap, &pg, n, 100).await?;
    eprintln!("sluice, batch.max.rows 1000 ...");
    let sluice_1000 = through_sluice(&bootstrap, &pg, n, 1000).await?;
    eprintln!("psycopg loop ...");
    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/jdbc_psycopg_baseline.py"
    );
    let topic = format!("psycopg-{}", std::process::id());
    create_topic(&bootstrap, &topic, 4).await?;
    let psycopg = child_run(
        "Python psycopg + confluent-kafka loop (JSON)",
        n,
        Command::new(python).args([script, &pg.url(), TABLE, &bootstrap, &topic, "1000"]),
    )?;
    println!("{}", table(&[bare, sluice_100, sluice_1000, psycopg]));

    eprintln!("lag ...");
    let (p50, p99) = lag(&bootstrap, &pg, &db, "5000").await?;
    let (f50, f99) = lag(&bootstrap, &pg, &db, "100").await?;
    println!(
        "\nEnd-to-end lag of a row inserted while the connector runs (insert → read from the topic, \
         200 rows 50 ms apart):\n\n| poll.interval.ms | p50 ms | p99 ms |\n|---|---|---|\n\
         | 5000 (default) | {p50:.0} | {p99:.0} |\n| 100 | {f50:.0} | {f99:.0} |"
    );
    Ok(())
}
