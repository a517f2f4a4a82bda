//! restic's JSON: the `backup --json` summary and errors, `snapshots --json`. Pure.

use serde::{Deserialize, Serialize};

/// The last line of `restic backup --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Summary {
    /// Short (0.14) or full id.
    #[serde(default)]
    pub snapshot_id: String,
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_files_processed: u64,
}

/// What `restic backup --json` printed: the summary (when it made a snapshot) and the items it
/// could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupOutput {
    pub summary: Option<Summary>,
    pub unreadable: Vec<String>,
}

#[derive(Deserialize)]
struct Message {
    message_type: String,
    #[serde(default)]
    item: Option<String>,
}

pub fn parse_backup(stdout: &str) -> BackupOutput {
    let mut out = BackupOutput::default();
    for line in stdout.lines() {
        let Ok(m) = serde_json::from_str::<Message>(line) else {
            continue;
        };
        match m.message_type.as_str() {
            "summary" => out.summary = serde_json::from_str(line).ok(),
            "error" => out.unreadable.extend(m.item),
            _ => {}
        }
    }
    out
}

/// One snapshot of `restic snapshots --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    /// RFC 3339.
    pub time: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// restic ≥ 0.17 only.
    #[serde(default, skip_serializing)]
    pub summary: Option<Summary>,
}

impl Snapshot {
    /// The value of tag `key=...`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

pub fn parse_snapshots(stdout: &str) -> Result<Vec<Snapshot>, String> {
    // restic prints one JSON array (on one line); a warning before it is not JSON.
    let start = stdout.find('[').ok_or("no JSON list in restic's output")?;
    let mut list: Vec<Snapshot> =
        serde_json::from_str(stdout[start..].trim()).map_err(|e| e.to_string())?;
    list.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_summary_and_errors() {
        let out = r#"{"message_type":"status","percent_done":0}
{"message_type":"error","error":{},"during":"archival","item":"/backup/paths/srv/secret"}
{"message_type":"summary","files_new":1,"files_changed":0,"data_added":1400,"total_files_processed":3,"total_bytes_processed":4096,"total_duration":0.27,"snapshot_id":"d1f26b2a"}
"#;
        let b = parse_backup(out);
        assert_eq!(b.unreadable, vec!["/backup/paths/srv/secret"]);
        assert_eq!(
            b.summary,
            Some(Summary {
                snapshot_id: "d1f26b2a".into(),
                total_bytes_processed: 4096,
                data_added: 1400,
                total_files_processed: 3,
            })
        );
        assert_eq!(parse_backup("Fatal: x\n"), BackupOutput::default());
    }

    #[test]
    fn snapshots_sorted_with_tags() {
        let out = r#"[{"time":"2026-12-02T03:00:00Z","tree":"t","paths":["/d.sql"],"hostname":"berth-x","tags":["berth-backup=nightly","berth-source=dump:d.sql"],"id":"bb","short_id":"b"},{"time":"2026-12-01T03:00:00Z","paths":["/x"],"id":"aa","short_id":"a"}]"#;
        let s = parse_snapshots(out).unwrap();
        assert_eq!(s[0].id, "aa");
        assert_eq!(s[1].tag("berth-source"), Some("dump:d.sql"));
        assert_eq!(s[1].tag("berth-backup"), Some("nightly"));
        assert_eq!(s[0].tag("berth-source"), None);
        assert!(parse_snapshots("Fatal: no").is_err());
        assert_eq!(parse_snapshots("[]").unwrap(), vec![]);
    }
}
