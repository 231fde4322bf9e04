//! Benchmark: PostgreSQL changes → a Kafka topic through logical replication, side by side in one
//! run (see bench/README.md):
//!
//! - **pg_recvlogical** (the limit): streams the same pgoutput changes to /dev/null, decoding
//!   nothing;
//! - **Sluice**: a release `sluice` worker running the PostgreSQL CDC source (JSON values without
//!   schemas, Debezium's envelope) into a 4-partition topic;
//! - **psycopg2 loop** (the hand-written alternative): `bench/python/cdc_psycopg2_baseline.py`,
//!   pgoutput decoded in Python, each change produced as JSON with confluent-kafka.
//!
//! A pgbench-style load (inserts, then updates, of a 10-column table, 1,000 rows per transaction)
//! is written while no one reads, into one slot per contender, so all three stream the same
//! backlog. CPU seconds per million changes of each contender's own process.
//!
//! Then the end-to-end lag (commit → record read from the topic) p50/p99 while 5,000 changes/s are
//! written (50-row inserts every 10 ms for 20 s) and the connector streams.
//!
//! usage: sluice-cdc-bench [changes]

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

const TABLE: &str = "bench_changes";
const PUBLICATION: &str = "bench_pub";

async fn exec(db: &sqlx::PgPool, sql: &str) -> Result<()> {
    sqlx::raw_sql(sql).execute(db).await?;
    Ok(())
}

/// Half inserts, half updates of every column but the key, 1,000 rows per transaction.
async fn load(db: &sqlx::PgPool, changes: u64) -> Result<()> {
    let rows = changes / 2;
    let mut done = 0;
    while done < rows {
        let upto = (done + 1000).min(rows);
        exec(
            db,
            &format!(
                "INSERT INTO {TABLE} (id, account, amount, quantity, price, sku, note, status, \
                 created_at, flag) SELECT g, g % 5000, (g % 100000) / 100.0, (g % 20)::int2, \
                 (g % 997) / 7.0, 'SKU-' || g, 'a note of some length about row ' || g, 'new', \
                 now(), g % 2 = 0 FROM generate_series({}, {upto}) AS g",
                done + 1
            ),
        )
        .await?;
        done = upto;
    }
    done = 0;
    while done < rows {
        let upto = (done + 1000).min(rows);
        exec(
            db,
            &format!(
                "UPDATE {TABLE} SET account = account + 1, amount = amount + 1, quantity = 1, \
                 price = price * 2, sku = sku || '-u', note = 'updated', status = 'paid', \
                 created_at = now(), flag = NOT flag WHERE id BETWEEN {} AND {upto}",
                done + 1
            ),
        )
        .await?;
        done = upto;
    }
    Ok(())
}

fn connector(pg: &Postgres, name: &str, slot: &str, publication: &str) -> serde_json::Value {
    json!({"name": name, "config": {
        "connector.class": "PostgresCdc", "database.hostname": "127.0.0.1",
        "database.port": pg.port.to_string(), "database.user": "postgres",
        "database.dbname": "postgres", "database.sslmode": "disable", "topic.prefix": name,
        "slot.name": slot, "publication.name": publication,
        "publication.autocreate.mode": "disabled", "snapshot.mode": "no_data",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
    }})
}

async fn through_sluice(bootstrap: &str, pg: &Postgres, n: u64) -> Result<Run> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("cdcbench-{}", std::process::id());
    let topic = format!("{id}.public.{TABLE}");
    create_topic(bootstrap, &topic, 4).await?;
    let worker = Killed(worker_command(bootstrap, &id, port)?.spawn()?);
    let pid = worker.0.id();
    wait_healthy(&http, port).await?;
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    create_connector(&http, port, &connector(pg, &id, "slot_sluice", PUBLICATION)).await?;
    wait_for_records(bootstrap, &topic, 4, n, Duration::from_secs(1800)).await?;
    Ok(Run {
        name: "Sluice PostgreSQL CDC source (worker process, Debezium envelope)".into(),
        records: n,
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid)? - cpu0,
    })
}

/// p50 and p99 ms from a row's insert to its arrival from the topic, 5,000 changes/s for 20 s.
async fn lag(bootstrap: &str, pg: &Postgres, db: &sqlx::PgPool) -> Result<(f64, f64, usize)> {
    let http = reqwest::Client::new();
    let port = free_port()?;
    let id = format!("cdclag-{}", std::process::id());
    exec(
        db,
        "CREATE TABLE lag_rows (id bigserial PRIMARY KEY, inserted_ms int8 NOT NULL, pad text); \
         CREATE PUBLICATION lag_pub FOR TABLE lag_rows",
    )
    .await?;
    let topic = format!("{id}.public.lag_rows");
    create_topic(bootstrap, &topic, 4).await?;
    let _worker = Killed(worker_command(bootstrap, &id, port)?.spawn()?);
    wait_healthy(&http, port).await?;
    create_connector(&http, port, &connector(pg, &id, "slot_lag", "lag_pub")).await?;
    let consumer = lag_consumer(bootstrap, &format!("{id}-reader"), &topic)?;
    // One row first, so the timed rows meet a streaming task (not its start-up).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        exec(db, "INSERT INTO lag_rows (inserted_ms) VALUES (0)").await?;
        let message = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(500)));
        if matches!(message, Some(Ok(_))) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the first change did not arrive within 60 s".into());
        }
    }
    const TICKS: usize = 2000;
    const ROWS: usize = 50;
    let insert = {
        let db = db.clone();
        let sql = format!(
            "INSERT INTO lag_rows (inserted_ms, pad) SELECT \
             (extract(epoch FROM clock_timestamp()) * 1000)::int8, 'row ' || g \
             FROM generate_series(1, {ROWS}) AS g"
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..TICKS {
                tick.tick().await;
                sqlx::query(&sql).execute(&db).await?;
            }
            Ok::<_, sqlx::Error>(())
        })
    };
    let mut lags = Vec::with_capacity(TICKS * ROWS);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lags.len() < TICKS * ROWS && Instant::now() < deadline {
        let message = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(100)));
        if let Some(Ok(m)) = message {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or(b"null"))?;
            let inserted = value["after"]["inserted_ms"].as_i64().unwrap_or(0);
            if inserted > 0 {
                lags.push((now_ms - inserted) as f64);
            }
        }
    }
    insert.await??;
    if lags.len() < TICKS * ROWS {
        return Err(format!("{} of {} changes arrived", lags.len(), TICKS * ROWS).into());
    }
    let (p50, p99) = (quantile(&mut lags, 0.5), quantile(&mut lags, 0.99));
    Ok((p50, p99, lags.len()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (_broker, bootstrap) = start_broker(&dir.path().join("kafka"))?;
    let pg = Postgres::start();
    let db = pg.pool().await;
    exec(
        &db,
        &format!(
            "CREATE TABLE {TABLE} (id int8 PRIMARY KEY, account int4, amount numeric(12,2), \
             quantity int2, price float8, sku text, note text, status text, created_at timestamptz, \
             flag bool); CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}"
        ),
    )
    .await?;
    for slot in ["slot_sluice", "slot_recv", "slot_py"] {
        exec(
            &db,
            &format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
        )
        .await?;
    }
    eprintln!("writing {n} changes ...");
    load(&db, n).await?;
    let end: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&db)
        .await?;

    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = |name: &str| format!("{}/python/{name}", env!("CARGO_MANIFEST_DIR"));
    eprintln!("pg_recvlogical ...");
    let port = pg.port.to_string();
    let recv = child_run(
        "pg_recvlogical to /dev/null (pgoutput, nothing decoded)",
        n,
        Command::new(&python)
            .arg(script("measured.py"))
            .arg(pg.binary("pg_recvlogical"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args([
                "--slot",
                "slot_recv",
                "--start",
                "--endpos",
                &end,
                "-f",
                "/dev/null",
            ])
            .args(["-o", "proto_version=1", "-o"])
            .arg(format!("publication_names={PUBLICATION}")),
    )?;
    eprintln!("sluice ...");
    let sluice = through_sluice(&bootstrap, &pg, n).await?;
    eprintln!("psycopg2 loop ...");
    let topic = format!("psycopg2-{}", std::process::id());
    create_topic(&bootstrap, &topic, 4).await?;
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let py = child_run(
        "Python psycopg2 logical replication + confluent-kafka (JSON)",
        n,
        Command::new(&python)
            .arg(script("cdc_psycopg2_baseline.py"))
            .args([
                &dsn,
                "slot_py",
                PUBLICATION,
                &bootstrap,
                &topic,
                &n.to_string(),
            ]),
    )?;
    println!("{}", table(&[recv, sluice, py]));

    eprintln!("lag ...");
    let (p50, p99, count) = lag(&bootstrap, &pg, &db).await?;
    println!(
        "\nEnd-to-end lag while 5,000 changes/s are written (commit → read from the topic, \
         {count} changes):\n\n| p50 ms | p99 ms |\n|---|---|\n| {p50:.0} | {p99:.0} |"
    );
    Ok(())
}
