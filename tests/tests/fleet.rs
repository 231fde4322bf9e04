//! Distributed mode: several worker processes on one broker form a fleet, split connectors and
//! tasks between them, and move work when workers join, leave, die or are cut off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_tests::*;

const SECRET: &str = "fleet-test-secret";
const SESSION_MS: u64 = 4000;

fn fleet_settings(broker: &Broker) -> WorkerSettings {
    WorkerSettings::new(broker)
        .with("cluster.secret", SECRET)
        .with("session.timeout.ms", &SESSION_MS.to_string())
        .with("heartbeat.interval.ms", "300")
        .with("cluster.fault.injection.enable", "true")
}

/// Starts `n` workers at once (so formation races are exercised) and waits until they form one
/// fleet.
async fn start_fleet(settings: &WorkerSettings, n: usize) -> Vec<Worker> {
    let workers = futures::future::join_all((0..n).map(|_| Worker::start(settings.clone()))).await;
    wait_for_members(&workers, n).await;
    workers
}

/// Waits until every worker sees the same leader and `n` members.
async fn wait_for_members(workers: &[Worker], n: usize) {
    eventually(
        &format!("{n} workers in one fleet"),
        Duration::from_secs(60),
        || async {
            let mut leaders = BTreeSet::new();
            for w in workers {
                let f = w.get("/fleet").await.body;
                if f["workers"].as_array()?.len() != n || !f["this_worker"]["live"].as_bool()? {
                    return None;
                }
                leaders.insert(f["leader"]["node_id"].as_u64()?);
            }
            (leaders.len() == 1).then_some(())
        },
    )
    .await;
}

/// Each worker's locally running tasks (its own view), by worker URL.
async fn local_tasks(workers: &[&Worker]) -> BTreeMap<String, BTreeSet<(String, u64)>> {
    let mut out = BTreeMap::new();
    for w in workers {
        let f = w.get("/fleet").await.body;
        let tasks = f["this_worker"]["tasks"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t["connector"].as_str().unwrap_or_default().to_owned(),
                            t["task"].as_u64().unwrap_or(u64::MAX),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(w.url.clone(), tasks);
    }
    out
}

/// Task worker ids from a connector's status, once all `tasks` are RUNNING.
async fn running_on(worker: &Worker, name: &str, tasks: usize) -> Vec<String> {
    let status = worker.wait_for_state(name, "RUNNING", tasks).await;
    status["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["worker_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn worker_id(w: &Worker) -> String {
    w.url.trim_start_matches("http://").to_owned()
}

fn counts(owners: &[String]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for o in owners {
        *c.entry(o.clone()).or_default() += 1;
    }
    c
}

fn datagen(topic: &str, tasks: u32, rate: u32, iterations: i64) -> Value {
    json!({
        "connector.class": "DatagenConnector",
        "kafka.topic": topic,
        "quickstart": "orders",
        "tasks.max": tasks.to_string(),
        "records.per.second": rate.to_string(),
        "iterations": iterations.to_string(),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    })
}

fn file_sink(topic: &str, tasks: u32, out: &std::path::Path) -> Value {
    json!({
        "connector.class": "FileStreamSink",
        "topics": topic,
        "file": out.display().to_string(),
        "tasks.max": tasks.to_string(),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "consumer.override.fetch.wait.max.ms": "50",
    })
}

/// A datagen source → topic → file sink pipeline with records flowing.
struct Pipeline {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    source: String,
    sink: String,
    /// Worker id of each source task when records started flowing.
    owners: Vec<String>,
}

/// Creates `tasks` datagen tasks of `per_task` records at `rate`/s each and a 3-task file sink, and
/// waits until more than `flowing` records reached the file.
async fn start_pipeline(
    worker: &Worker,
    tasks: u32,
    rate: u32,
    per_task: i64,
    flowing: usize,
) -> Pipeline {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (source, sink, topic) = (unique("src"), unique("sink"), unique("pipeline"));
    worker
        .create(&source, datagen(&topic, tasks, rate, per_task))
        .await;
    worker.create(&sink, file_sink(&topic, 3, &out)).await;
    let owners = running_on(worker, &source, tasks as usize).await;
    running_on(worker, &sink, 3).await;
    eventually("records flowing", Duration::from_secs(60), || async {
        (read_json_lines(&out).len() > flowing).then_some(())
    })
    .await;
    Pipeline {
        _dir: dir,
        out,
        source,
        sink,
        owners,
    }
}

async fn leader_url(worker: &Worker) -> Option<String> {
    let f = worker.get("/fleet").await.body;
    f["leader"]["url"].as_str().map(str::to_owned)
}

/// How many times each worker's log says it started task `id`.
fn starts_of(workers: &[&Worker], id: &str) -> usize {
    workers
        .iter()
        .flat_map(|w| {
            w.log()
                .lines()
                .filter(|l| {
                    l.contains("starting task")
                        && (l.ends_with(&format!("task={id}"))
                            || l.contains(&format!("task={id} ")))
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_tasks_run_once_each_balanced_over_three_workers() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let workers = start_fleet(&settings, 3).await;
    let name = unique("spread");
    let topic = unique("spread-topic");
    workers[1]
        .create(&name, datagen(&topic, 6, 5, 1_000_000))
        .await;

    let owners = running_on(&workers[0], &name, 6).await;
    let per_worker = counts(&owners);
    assert_eq!(per_worker.len(), 3, "tasks on {per_worker:?}");
    assert!(per_worker.values().all(|n| *n == 2), "{per_worker:?}");

    // What each worker runs (its own view) covers every task exactly once, and agrees with status.
    let refs: Vec<&Worker> = workers.iter().collect();
    let local = eventually("local views to settle", Duration::from_secs(20), || async {
        let local = local_tasks(&refs).await;
        (local.values().map(BTreeSet::len).sum::<usize>() == 6).then_some(local)
    })
    .await;
    let mut all = BTreeSet::new();
    for (url, tasks) in &local {
        for (c, t) in tasks {
            assert!(all.insert((c.clone(), *t)), "task {c}-{t} runs twice");
            assert_eq!(owners[*t as usize], url.trim_start_matches("http://"));
        }
    }
    assert_eq!(all.len(), 6);

    // GET / keeps Kafka Connect's shape; /fleet shows the assignment generation.
    let root = workers[2].get("/").await.body;
    assert!(root["version"].is_string() && root["kafka_cluster_id"].is_string());
    // The third worker is promoted to voter a moment after it joined: wait for it.
    let fleet = eventually("three voters", Duration::from_secs(20), || async {
        let fleet = workers[2].get("/fleet").await.body;
        let voters = fleet["workers"]
            .as_array()
            .map(|ws| ws.iter().filter(|w| w["voter"] == true).count());
        (voters == Some(3)).then_some(fleet)
    })
    .await;
    assert!(
        fleet["generation"].as_i64().is_some_and(|g| g > 0),
        "{fleet}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_worker_moves_its_tasks_and_loses_nothing() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 3).await;
    let (tasks, rate, per_task) = (3, 400, 6_000);
    let Pipeline {
        _dir,
        out,
        source,
        sink,
        owners,
    } = start_pipeline(&workers[0], tasks, rate, per_task, 1_000).await;

    // Kill a worker that runs a source task.
    let victim_id = owners[0].clone();
    let victim = workers
        .iter()
        .position(|w| worker_id(w) == victim_id)
        .expect("victim");
    let killed_at = Instant::now();
    workers[victim].kill();
    let survivor = &workers[(victim + 1) % 3];
    eventually(
        "the dead worker's tasks RUNNING elsewhere",
        Duration::from_secs(60),
        || async {
            for name in [&source, &sink] {
                let s = survivor
                    .get(&format!("/connectors/{name}/status"))
                    .await
                    .body;
                let ok = s["tasks"].as_array()?.iter().all(|t| {
                    t["state"] == "RUNNING" && t["worker_id"].as_str() != Some(&victim_id)
                });
                if !ok {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let failover = killed_at.elapsed();
    let lines_then = read_json_lines(&out).len();
    eventually("records flowing again", Duration::from_secs(60), || async {
        (read_json_lines(&out).len() > lines_then).then_some(())
    })
    .await;
    let flowing = killed_at.elapsed();

    let records =
        wait_for_every_sequence(&out, tasks as i64, per_task, Duration::from_secs(120)).await;
    let report = sequence_report(&records, tasks as i64, per_task);
    // Sources: at most one flush interval (1 s) of records per moved task, plus the batch in
    // flight. Sinks: a partition rewinds to its last successful commit. On Kafka only the dead
    // task's partitions rewind, by at most one flush interval: a static member's replacement does
    // not rebalance the group. tansu rebalances the whole group when the replacement joins, and
    // commits fail while it does, so every partition may rewind by one flush interval plus the
    // time until records flow again.
    let moved_tasks = owners.iter().filter(|o| **o == victim_id).count().max(1);
    let bound = moved_tasks * rate as usize * 2;
    let sink_bound = ((tasks * rate) as f64 * (1.0 + flowing.as_secs_f64())) as usize;
    println!(
        "failover: tasks RUNNING elsewhere after {failover:?}, records flowing after {flowing:?}; \
         duplicates: {} re-delivered by the sink (bound {sink_bound}), {} re-produced by the \
         source (bound {bound})",
        report.sink_duplicates, report.source_duplicates
    );
    assert!(report.missing.is_empty());
    assert!(
        report.source_duplicates <= bound,
        "source duplicates {}",
        report.source_duplicates
    );
    assert!(
        report.sink_duplicates <= sink_bound,
        "sink duplicates {}",
        report.sink_duplicates
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_elects_another_and_writes_go_through_any_worker() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 3).await;
    let leader = leader_url(&workers[0]).await.expect("leader");
    let idx = workers
        .iter()
        .position(|w| w.url == leader)
        .expect("leader is a worker");
    workers[idx].kill();
    let rest: Vec<&Worker> = workers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .map(|(_, w)| w)
        .collect();
    let new_leader = eventually("a new leader", Duration::from_secs(60), || async {
        let l = leader_url(rest[0]).await?;
        (l != leader && leader_url(rest[1]).await.as_deref() == Some(l.as_str())).then_some(l)
    })
    .await;

    // Writes through the non-leader are forwarded; through the leader they are served.
    let follower = rest
        .iter()
        .find(|w| w.url != new_leader)
        .expect("a follower");
    let name = unique("after-failover");
    follower
        .create(&name, datagen(&unique("t"), 2, 5, 1_000_000))
        .await;
    running_on(rest[0], &name, 2).await;
    let r = follower
        .request("PUT", &format!("/connectors/{name}/pause"), None)
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    for w in &rest {
        w.wait_for_state(&name, "PAUSED", 2).await;
    }
    let r = follower
        .request("DELETE", &format!("/connectors/{name}"), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        rest[1].get(&format!("/connectors/{name}")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_takes_its_share_and_only_moved_tasks_restart() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 3).await;
    let name = unique("join");
    workers[0]
        .create(&name, datagen(&unique("join-topic"), 6, 5, 1_000_000))
        .await;
    let before = running_on(&workers[0], &name, 6).await;

    workers.push(Worker::start(settings.clone()).await);
    wait_for_members(&workers, 4).await;
    let newcomer = worker_id(&workers[3]);
    let after = eventually(
        "the new worker to get tasks",
        Duration::from_secs(60),
        || async {
            let owners = running_on(&workers[0], &name, 6).await;
            owners.contains(&newcomer).then_some(owners)
        },
    )
    .await;
    let per_worker = counts(&after);
    assert_eq!(per_worker.len(), 4, "{per_worker:?}");
    assert!(
        per_worker.values().all(|n| (1..=2).contains(n)),
        "{per_worker:?}"
    );

    let refs: Vec<&Worker> = workers.iter().collect();
    let mut moved = 0;
    for t in 0..6 {
        let id = format!("{name}-{t}");
        let starts = starts_of(&refs, &id);
        if before[t] == after[t] {
            assert_eq!(
                starts, 1,
                "task {id} stayed on {} but was restarted",
                after[t]
            );
        } else {
            moved += 1;
            assert_eq!(starts, 2, "task {id} moved once");
        }
    }
    assert_eq!(
        moved, per_worker[&newcomer],
        "only the newcomer's tasks moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_tasks_over_before_exit_with_zero_duplicates() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 3).await;
    let (tasks, per_task) = (3, 5_000);
    let Pipeline {
        _dir,
        out,
        source,
        sink,
        owners,
    } = start_pipeline(&workers[0], tasks, 400, per_task, 1_000).await;

    let leaving_id = owners[1].clone();
    let idx = workers
        .iter()
        .position(|w| worker_id(w) == leaving_id)
        .expect("worker");
    let took = workers[idx].terminate();
    println!("SIGTERM: worker exited after {took:?}");
    let other = &workers[(idx + 1) % 3];
    // The other worker's status store may still hold the leaving worker's RUNNING records for a
    // moment (the new owners' records replace them): poll until it shows the move.
    for name in [&source, &sink] {
        eventually(
            &format!("{name} off {leaving_id}"),
            Duration::from_secs(30),
            || async {
                let owners = running_on(other, name, 3).await;
                (!owners.contains(&leaving_id)).then_some(())
            },
        )
        .await;
    }
    let records =
        wait_for_every_sequence(&out, tasks as i64, per_task, Duration::from_secs(120)).await;
    let report = sequence_report(&records, tasks as i64, per_task);
    assert_eq!(
        (report.sink_duplicates, report.source_duplicates),
        (0, 0),
        "a graceful hand-over duplicates nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_the_fleet_stops_its_tasks_within_the_session_timeout() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let workers = start_fleet(&settings, 3).await;
    let name = unique("cut");
    workers[0]
        .create(&name, datagen(&unique("cut-topic"), 6, 5, 1_000_000))
        .await;
    running_on(&workers[0], &name, 6).await;

    // Cut off a worker that is not the leader (the leader case is covered by quorum loss of one).
    let leader = leader_url(&workers[0]).await.expect("leader");
    let victim = workers.iter().find(|w| w.url != leader).expect("follower");
    let victim_tasks: BTreeSet<(String, u64)> = local_tasks(&[victim])
        .await
        .into_values()
        .next()
        .unwrap_or_default();
    assert!(!victim_tasks.is_empty());
    let http = reqwest::Client::new();
    let isolate = |on: bool| {
        http.put(format!("{}/sluice/internal/isolate", victim.url))
            .header("x-sluice-cluster-secret", SECRET)
            .json(&json!({"isolated": on}))
            .send()
    };
    // Without the secret the internal API refuses.
    let refused = http
        .put(format!("{}/sluice/internal/isolate", victim.url))
        .json(&json!({"isolated": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);

    let cut_at = Instant::now();
    assert!(isolate(true).await.expect("isolate").status().is_success());
    let others: Vec<&Worker> = workers.iter().filter(|w| w.url != victim.url).collect();
    let mut stopped_at = None;
    let mut elsewhere_at = None;
    while stopped_at.is_none() || elsewhere_at.is_none() {
        assert!(
            cut_at.elapsed() < Duration::from_secs(60),
            "no failover after 60 s"
        );
        if stopped_at.is_none()
            && local_tasks(&[victim])
                .await
                .values()
                .all(BTreeSet::is_empty)
        {
            stopped_at = Some(cut_at.elapsed());
        }
        if elsewhere_at.is_none() {
            let local = local_tasks(&others).await;
            let covered: BTreeSet<_> = local.values().flatten().cloned().collect();
            if victim_tasks.is_subset(&covered) {
                elsewhere_at = Some(cut_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stopped, elsewhere) = (
        stopped_at.unwrap_or_default(),
        elsewhere_at.unwrap_or_default(),
    );
    let overlap = stopped.saturating_sub(elsewhere);
    println!(
        "cut off: stopped its tasks after {stopped:?}; they ran elsewhere after {elsewhere:?}; overlap {overlap:?}"
    );
    let session = Duration::from_millis(SESSION_MS);
    assert!(
        stopped <= session + Duration::from_secs(2),
        "stopped after {stopped:?}"
    );
    assert!(overlap <= session, "ran twice for {overlap:?}");

    // Healed: it rejoins and takes a share again.
    assert!(isolate(false).await.expect("heal").status().is_success());
    wait_for_members(&workers, 3).await;
    let owners = eventually(
        "a balanced fleet again",
        Duration::from_secs(60),
        || async {
            let owners = running_on(&workers[0], &name, 6).await;
            let c = counts(&owners);
            (c.len() == 3 && c.values().all(|n| *n == 2)).then_some(owners)
        },
    )
    .await;
    assert!(
        owners.contains(&worker_id(victim)),
        "the healed worker runs tasks again"
    );
}

/// Voter ids and member count from a worker's `/fleet`.
/// The voters and member count a worker sees, once no voter change is in flight.
async fn voters_of(worker: &Worker) -> Option<(BTreeSet<u64>, usize)> {
    let f = worker.get("/fleet").await.body;
    if f["membership_changing"] != false {
        return None;
    }
    let workers = f["workers"].as_array()?;
    let voters = workers
        .iter()
        .filter(|w| w["voter"] == true)
        .filter_map(|w| w["node_id"].as_u64())
        .collect();
    Some((voters, workers.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_workers_keep_three_voters_and_replace_a_dead_one() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 10).await;
    // The leader promotes voters as learners join: the third may come a moment after the tenth
    // member is seen.
    // Ask the leader of the moment (ten workers forming on two cores may elect more than once): a
    // follower may learn of the committed change a moment later.
    let voters = eventually(
        "3 voters among 10 members",
        Duration::from_secs(60),
        || async {
            let leader_at = leader_url(&workers[0]).await?;
            let leader = workers.iter().find(|w| w.url == leader_at)?;
            let (voters, members) = voters_of(leader).await?;
            ((voters.len(), members) == (3, 10)).then_some(voters)
        },
    )
    .await;
    let name = unique("ten");
    workers[3]
        .create(&name, datagen(&unique("ten-topic"), 10, 2, 1_000_000))
        .await;
    let owners = running_on(&workers[0], &name, 10).await;
    assert_eq!(counts(&owners).len(), 10, "one task per worker: {owners:?}");

    // Kill a voter that does not lead: the leader promotes a learner.
    let leader = leader_url(&workers[0]).await.expect("leader");
    let mut victim = None;
    for (i, w) in workers.iter().enumerate() {
        let f = w.get("/fleet").await.body;
        let me = f["this_worker"]["node_id"].as_u64();
        if w.url != leader && me.is_some_and(|id| voters.contains(&id)) {
            victim = Some(i);
            break;
        }
    }
    let victim = victim.expect("a voter that is not the leader");
    workers[victim].kill();
    let survivor = &workers[(victim + 1) % 10];
    let (new_voters, _) = eventually("three voters again", Duration::from_secs(60), || async {
        let (v, n) = voters_of(survivor).await?;
        (v.len() == 3 && n == 9 && v != voters).then_some((v, n))
    })
    .await;
    assert_eq!(new_voters.intersection(&voters).count(), 2);
    let dead = worker_id(&workers[victim]);
    let owners = eventually(
        "the dead voter's task elsewhere",
        Duration::from_secs(60),
        || async {
            let owners = running_on(survivor, &name, 10).await;
            (!owners.contains(&dead)).then_some(owners)
        },
    )
    .await;
    assert!(counts(&owners).values().all(|n| (1..=2).contains(n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_of_three_voters_reforms_the_fleet_from_the_config_topic() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 5).await;
    let name = unique("quorum");
    workers[0]
        .create(&name, datagen(&unique("quorum-topic"), 5, 2, 1_000_000))
        .await;
    running_on(&workers[0], &name, 5).await;
    let voters = eventually("3 settled voters", Duration::from_secs(30), || async {
        let (voters, _) = voters_of(&workers[0]).await?;
        (voters.len() == 3).then_some(voters)
    })
    .await;
    let epoch = workers[0].get("/fleet").await.body["epoch"].as_u64();

    // SIGKILL two voters at once: the third cannot reach a quorum.
    let mut killed = 0;
    for w in workers.iter_mut() {
        let me = w.get("/fleet").await.body["this_worker"]["node_id"].as_u64();
        if killed < 2 && me.is_some_and(|id| voters.contains(&id)) {
            w.kill();
            killed += 1;
        }
    }
    assert_eq!(killed, 2);
    let alive: Vec<&Worker> = workers.iter().filter(|w| w.is_running()).collect();
    assert_eq!(alive.len(), 3);
    // The survivors form a new epoch and run every task again.
    eventually(
        "a new fleet epoch of three",
        Duration::from_secs(90),
        || async {
            let f = alive[0].get("/fleet").await.body;
            let newer = f["epoch"].as_u64() > epoch;
            (newer && f["workers"].as_array()?.len() == 3).then_some(())
        },
    )
    .await;
    let alive_ids: BTreeSet<String> = alive.iter().map(|w| worker_id(w)).collect();
    // Every task runs again, spread over the three survivors (the first worker of the new epoch
    // takes everything, then shares it as the others join).
    eventually(
        "every task on a survivor, balanced",
        Duration::from_secs(60),
        || async {
            let owners = running_on(alive[0], &name, 5).await;
            let c = counts(&owners);
            (owners.iter().all(|o| alive_ids.contains(o)) && c.len() == 3).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_nothing_and_leaves_every_task_running() {
    let broker = Broker::start();
    let settings = fleet_settings(&broker);
    let mut workers = start_fleet(&settings, 3).await;
    let (tasks, per_task) = (3, 6_000);
    let Pipeline {
        _dir,
        out,
        source,
        sink,
        ..
    } = start_pipeline(&workers[0], tasks, 300, per_task, 500).await;

    for i in 0..workers.len() {
        let took = workers[i].restart_gracefully().await;
        println!("rolling restart: worker {i} exited after {took:?}");
        wait_for_members(&workers, 3).await;
    }
    let records =
        wait_for_every_sequence(&out, tasks as i64, per_task, Duration::from_secs(120)).await;
    let report = sequence_report(&records, tasks as i64, per_task);
    println!(
        "rolling restart: {} distinct, {} re-delivered by the sink, {} re-produced by the source",
        report.distinct, report.sink_duplicates, report.source_duplicates
    );
    assert!(report.missing.is_empty());
    assert_eq!(
        (report.sink_duplicates, report.source_duplicates),
        (0, 0),
        "graceful restarts duplicate nothing"
    );
    let alive: BTreeSet<String> = workers.iter().map(worker_id).collect();
    for name in [&source, &sink] {
        let owners = eventually(
            "every task RUNNING on a current worker",
            Duration::from_secs(60),
            || async {
                let owners = running_on(&workers[0], name, 3).await;
                owners.iter().all(|o| alive.contains(o)).then_some(owners)
            },
        )
        .await;
        assert_eq!(owners.len(), 3);
    }
}
