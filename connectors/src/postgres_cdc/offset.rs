//! Where the connector is, in Debezium's `PostgresOffsetContext` shape: partition
//! `{"server": <topic.prefix>}`, offset `{lsn, lsn_proc, lsn_commit, lsn_events_processed, txId,
//! ts_usec, messageType}` while streaming and `{snapshot, last_snapshot_record, lsn, ts_usec}`
//! while snapshotting.
//!
//! `lsn_commit` is the commit LSN of the last transaction read whole before the record;
//! `lsn_proc` and `lsn_events_processed` say how far into the next one (`txId`) the record is
//! (changes of one multi-row statement share an LSN). A resumed stream skips every transaction
//! committed at or before `lsn_commit` and the changes of `txId` at or before that position: no
//! change is read twice from a stored offset, and none is skipped.

use serde::{Deserialize, Serialize};

/// The source partition: Debezium's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPartition {
    /// `topic.prefix`.
    pub server: String,
}

impl ServerPartition {
    /// The partition of a connector with `topic.prefix` `prefix`.
    pub fn of(prefix: &str) -> Self {
        Self {
            server: prefix.to_owned(),
        }
    }
}

/// A record's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcOffset {
    /// The LSN of the record's change (of the snapshot's start while snapshotting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// The LSN of the last change read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_proc: Option<u64>,
    /// The commit LSN of the last transaction read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_commit: Option<u64>,
    /// How many changes at `lsn_proc` of `txId` were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_events_processed: Option<u64>,
    /// The transaction of the record.
    #[serde(rename = "txId", default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<i64>,
    /// The commit time (µs since the epoch) of the record's transaction.
    #[serde(default)]
    pub ts_usec: i64,
    /// `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE` or `HEARTBEAT`.
    #[serde(
        rename = "messageType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_type: Option<String>,
    /// Whether the record is one of the snapshot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotFlag>,
    /// Whether it is the snapshot's last record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_record: Option<bool>,
}

/// Debezium writes `snapshot` as `true` (older versions) or as the snapshot's kind
/// (`"INITIAL"`); both read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SnapshotFlag {
    /// `true` / `false`.
    Flag(bool),
    /// The kind.
    Kind(String),
}

impl CdcOffset {
    /// Whether the offset is in a snapshot that did not finish (a restart snapshots again).
    pub fn in_unfinished_snapshot(&self) -> bool {
        let snapshot = match &self.snapshot {
            Some(SnapshotFlag::Flag(f)) => *f,
            Some(SnapshotFlag::Kind(k)) => !k.eq_ignore_ascii_case("false"),
            None => false,
        };
        snapshot && self.last_snapshot_record != Some(true)
    }

    /// Whether a change of transaction `xid` committed at `commit_lsn`, the `index`th at `lsn`,
    /// was already read according to this offset.
    pub fn covers(&self, commit_lsn: u64, xid: u32, lsn: u64, index: u64) -> bool {
        if self.snapshot.is_some() && self.lsn_proc.is_none() {
            // A snapshot's offset: the stream starts at the snapshot's point, nothing to skip.
            return false;
        }
        if self.lsn_commit.is_some_and(|c| commit_lsn <= c) {
            return true;
        }
        self.tx_id == Some(i64::from(xid))
            && self
                .lsn_proc
                .is_some_and(|p| (lsn, index) <= (p, self.lsn_events_processed.unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_stream_skips_exactly_what_was_read() {
        let at = CdcOffset {
            lsn: Some(500),
            lsn_proc: Some(500),
            lsn_commit: Some(400),
            lsn_events_processed: Some(2),
            tx_id: Some(7),
            ..CdcOffset::default()
        };
        assert!(at.covers(400, 6, 390, 1), "the transaction before, whole");
        assert!(at.covers(600, 7, 450, 1), "earlier in the transaction");
        assert!(at.covers(600, 7, 500, 2), "the record itself");
        assert!(
            !at.covers(600, 7, 500, 3),
            "the next change at the same LSN"
        );
        assert!(!at.covers(600, 7, 510, 1));
        assert!(!at.covers(700, 8, 650, 1), "a later transaction");
        let json = serde_json::to_value(&at).unwrap();
        assert_eq!(json["txId"], 7);
        assert_eq!(json["lsn_commit"], 400);
        let debezium: CdcOffset = serde_json::from_value(serde_json::json!({
            "snapshot": "INITIAL", "last_snapshot_record": false, "lsn": 9, "ts_usec": 1
        }))
        .unwrap();
        assert!(debezium.in_unfinished_snapshot());
        assert!(!debezium.covers(10, 1, 10, 1));
    }
}
