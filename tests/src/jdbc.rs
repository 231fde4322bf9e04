//! What the JDBC source's tests share, whatever the database: a broker and a worker, the
//! connector's name and topic prefix unique to the test, creating the source, reading a table's
//! topic back, and the task's counters.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::kafka::{Consumed, consume_all};
use crate::{Broker, Value, Worker, WorkerSettings, eventually, json, unique};

/// How long a test waits for rows.
pub const WAIT: Duration = Duration::from_secs(60);

/// A broker, a worker, and this test's connector name and topic prefix.
pub struct JdbcTest {
    /// The broker.
    pub broker: Broker,
    /// The worker.
    pub worker: Worker,
    /// The connector's name.
    pub name: String,
    /// Its `topic.prefix`.
    pub prefix: String,
}

impl JdbcTest {
    /// Starts a broker and a worker.
    pub async fn start() -> Self {
        let broker = Broker::start();
        let worker = Worker::start(WorkerSettings::new(&broker)).await;
        Self {
            broker,
            worker,
            name: unique("jdbc"),
            prefix: unique("db-"),
        }
    }

    /// A table name unique to this test.
    pub fn table(base: &str) -> String {
        unique(base).replace('-', "_")
    }

    /// The source's config for `url` with the test's settings (JSON values with schemas, keys
    /// without, 200 ms polls) and `extra`.
    pub fn config(&self, url: &str, extra: Value) -> Value {
        let mut c = json!({
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
            "tasks.max": "1",
            "connection.url": url,
            "topic.prefix": self.prefix,
            "poll.interval.ms": "200",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
        });
        c.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        c
    }

    /// Creates the test's source for `url` with `extra`.
    pub async fn source(&self, url: &str, extra: Value) {
        self.worker
            .create(&self.name, self.config(url, extra))
            .await;
    }

    /// The records of `table`'s topic, once there are at least `at_least`.
    pub async fn rows(&self, table: &str, at_least: usize) -> Vec<Consumed> {
        let topic = format!("{}{table}", self.prefix);
        consume_all(&self.broker.bootstrap, &topic, at_least, WAIT).await
    }

    /// The sum of a counter over the source's tasks.
    pub async fn task_counter(&self, counter: &str) -> u64 {
        let path = format!("/connectors/{}/status", self.name);
        let status = self.worker.get(&path).await.body;
        status["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["errors"]["counters"][counter].as_u64())
            .sum()
    }

    /// With `rows` rows in `table` (ids 1 to `rows`) being read in incrementing mode: SIGKILLs
    /// the worker once an offset past row 500 is stored, restarts it, and asserts that every row
    /// arrives and that the only duplicates are rows after the stored offset.
    pub async fn kill_mid_table_and_check_every_row(&mut self, table: &str, rows: usize) {
        let stored = eventually("an offset past row 500", WAIT, || async {
            let body = self.offsets().await;
            let inc = body["offsets"][0]["offset"]["incrementing"].as_i64()?;
            (inc >= 500).then_some(inc)
        })
        .await;
        self.worker.kill();
        self.worker.restart().await;
        let all = self.rows(table, rows).await;
        let last = i64::try_from(rows).expect("a row count");
        assert_eq!(
            counts(&all, "id").keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "every row at least once"
        );
        let duplicates = all.len() - rows;
        assert!(
            duplicates as i64 <= last - stored,
            "{duplicates} duplicates: read again from before the stored offset {stored}"
        );
    }

    /// The source's stored offsets (`GET /connectors/{name}/offsets`).
    pub async fn offsets(&self) -> Value {
        let path = format!("/connectors/{}/offsets", self.name);
        self.worker.get(&path).await.body
    }
}

/// A record's value payload (JSON with schemas).
pub fn payload(r: &Consumed) -> Value {
    r.json()["payload"].clone()
}

/// A field of a record's value schema.
pub fn field_schema(r: &Consumed, name: &str) -> Value {
    let schema = &r.json()["schema"];
    schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["field"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no field {name} in {schema}"))
}

/// How often each value of the integer `field` arrived.
pub fn counts(records: &[Consumed], field: &str) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let id = payload(r)[field].as_i64().expect("an integer field");
        *counts.entry(id).or_default() += 1;
    }
    counts
}
