//! The stream's shards and how they are divided among tasks.
//!
//! Guarantees:
//! - a shard and its ancestors among the listed shards (a *family*: shards linked by splits and
//!   merges) are always given to one task, so that the task can hold a child back until its parents
//!   are read to their end, which keeps each partition key's order across a split or a merge;
//! - the division is deterministic (the same shards give the same task configs, so listing them
//!   again asks for no reconfiguration) and balanced by shard count, a family at a time.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use sluice_connector_api::ConnectResult;

use crate::kinesis::stream::Stream;

/// One shard as a task config names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskShard {
    /// Shard id.
    pub id: String,
    /// Its parents among the shards read (a split has one, a merge two); read first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Created after the connector started: everything in it is new, so it is read from its
    /// start whatever `kinesis.position` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new: bool,
}

/// Every shard of the stream whose id matches `filter` (closed shards still within retention
/// included), with the parents that are among them.
pub async fn list(stream: &Stream, filter: &Regex) -> ConnectResult<Vec<TaskShard>> {
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = stream.client.list_shards();
        let request = match &token {
            // With a token, Kinesis refuses the stream name.
            Some(t) => request.next_token(t),
            None => request.stream_name(&stream.name),
        };
        let page = request
            .send()
            .await
            .map_err(|e| stream.error("ListShards", e))?;
        for shard in page.shards() {
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            listed.push(TaskShard {
                id: shard.shard_id().to_owned(),
                parents,
                new: false,
            });
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let kept: BTreeSet<String> = listed
        .iter()
        .filter(|s| filter.is_match(&s.id))
        .map(|s| s.id.clone())
        .collect();
    let mut shards: Vec<TaskShard> = listed
        .into_iter()
        .filter(|s| kept.contains(&s.id))
        .map(|mut s| {
            // A parent that is not read (filtered out, or past retention) is not waited for.
            s.parents.retain(|p| kept.contains(p));
            s
        })
        .collect();
    shards.sort();
    Ok(shards)
}

/// The shards divided among at most `max_tasks` tasks, families kept whole; no empty task.
pub fn assign(shards: &[TaskShard], max_tasks: usize) -> Vec<Vec<TaskShard>> {
    // Union-find over parent links.
    let index: BTreeMap<&str, usize> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut root: Vec<usize> = (0..shards.len()).collect();
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    for (i, shard) in shards.iter().enumerate() {
        for parent in &shard.parents {
            if let Some(&p) = index.get(parent.as_str()) {
                let (a, b) = (find(&mut root, i), find(&mut root, p));
                root[a.max(b)] = a.min(b);
            }
        }
    }
    let mut families: BTreeMap<usize, Vec<TaskShard>> = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let r = find(&mut root, i);
        families.entry(r).or_default().push(shard.clone());
    }
    let mut families: Vec<Vec<TaskShard>> = families.into_values().collect();
    // Largest first, then by first shard id: a stable, balanced greedy split.
    families.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a[0].id.cmp(&b[0].id)));
    let mut tasks: Vec<Vec<TaskShard>> = vec![Vec::new(); max_tasks.max(1)];
    for family in families {
        let lightest = (0..tasks.len())
            .min_by_key(|&t| (tasks[t].len(), t))
            .unwrap_or(0);
        tasks[lightest].extend(family);
    }
    tasks.retain(|t| !t.is_empty());
    for t in &mut tasks {
        t.sort();
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> TaskShard {
        TaskShard {
            id: id.into(),
            parents: parents.iter().map(|p| (*p).into()).collect(),
            new: false,
        }
    }

    #[test]
    fn families_stay_together_and_tasks_balance() {
        // 0 split into 4 and 5; 1 and 2 merged into 6; 3 alone.
        let shards = [
            shard("s0", &[]),
            shard("s1", &[]),
            shard("s2", &[]),
            shard("s3", &[]),
            shard("s4", &["s0"]),
            shard("s5", &["s0"]),
            shard("s6", &["s1", "s2"]),
        ];
        let tasks = assign(&shards, 3);
        let ids: Vec<Vec<&str>> = tasks
            .iter()
            .map(|t| t.iter().map(|s| s.id.as_str()).collect())
            .collect();
        assert_eq!(
            ids,
            [vec!["s0", "s4", "s5"], vec!["s1", "s2", "s6"], vec!["s3"]]
        );
        assert_eq!(assign(&shards, 3), tasks, "deterministic");
        assert_eq!(assign(&shards, 10).len(), 3, "no empty task");
        assert_eq!(assign(&shards, 1).len(), 1);
        assert!(assign(&[], 4).is_empty());
    }

    #[test]
    fn task_configs_round_trip_as_json() {
        let s = vec![
            shard("s4", &["s0"]),
            TaskShard {
                new: true,
                ..shard("s9", &[])
            },
        ];
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"[{"id":"s4","parents":["s0"]},{"id":"s9","new":true}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<TaskShard>>(&text).unwrap(), s);
    }
}
