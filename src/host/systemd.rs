//! systemd through `systemctl`: the one `show` call that observes every unit, and the
//! single-flight `daemon-reload`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::host::ObservedUnit;

/// The properties observe asks for.
pub(crate) const SHOW_PROPERTIES: &str = "--property=Id,LoadState,ActiveState,UnitFileState";

/// Parses `systemctl show --property=... -- A B ...`: one block of `Key=value` lines per unit,
/// separated by blank lines, in the order the units were named. Files are left empty.
pub(crate) fn parse_show(out: &str, units: &[&str]) -> Result<Vec<ObservedUnit>, String> {
    let blocks: Vec<&str> = out
        .split("\n\n")
        .map(|b| b.trim_matches('\n'))
        .filter(|b| !b.is_empty())
        .collect();
    if blocks.len() != units.len() {
        return Err(format!(
            "systemctl show printed {} blocks for {} units",
            blocks.len(),
            units.len()
        ));
    }
    Ok(blocks
        .into_iter()
        .map(|block| {
            let mut u = ObservedUnit::default();
            for line in block.lines() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let value = value.trim().to_string();
                match key {
                    "LoadState" => u.load = value,
                    "ActiveState" => u.active = value,
                    "UnitFileState" => u.file_state = value,
                    _ => {}
                }
            }
            u
        })
        .collect())
}

/// Single-flight with generations for `daemon-reload`: every caller takes a ticket before it
/// waits; a reload notes the last ticket issued when it starts, and covers every caller holding
/// a ticket up to that one. Callers that overlap a reload in progress share the next one; a
/// caller whose ticket came after a reload started gets one of its own.
#[derive(Debug, Default)]
pub(crate) struct Reloads {
    tickets: AtomicU64,
    /// The last ticket issued when the last successful reload started.
    done: tokio::sync::Mutex<u64>,
}

impl Reloads {
    /// Tickets issued so far (for tests).
    #[cfg(test)]
    pub(crate) fn issued(&self) -> u64 {
        self.tickets.load(Ordering::SeqCst)
    }

    /// Runs `reload` unless a reload that started after this call did already succeeded. A
    /// failed reload covers nobody: each waiting caller then tries its own.
    pub(crate) async fn run<F, Fut, E>(&self, reload: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        if *done >= ticket {
            return Ok(());
        }
        let start = self.tickets.load(Ordering::SeqCst);
        reload().await?;
        *done = start;
        Ok(())
    }
}
