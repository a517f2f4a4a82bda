//! The inventory file (`<state dir>/inventory-<instance>.json`): what berth created or took
//! over on the host. A missing file is an empty inventory; one that cannot be read or parsed is
//! an error, never an empty inventory (berth would forget what it owns).

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use super::{HostError, fs};
use crate::model::host::Inventory;

pub(crate) fn path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(format!("inventory-{instance}.json"))
}

fn error(path: &Path, message: String) -> HostError {
    HostError::Inventory {
        path: path.to_owned(),
        message,
        transient: true,
    }
}

pub(crate) fn load(path: &Path) -> Result<Inventory, HostError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Inventory::default()),
        Err(e) => return Err(error(path, format!("cannot read it: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| HostError::Inventory {
        path: path.to_owned(),
        message: format!(
            "cannot parse it ({e}): berth will not guess what it owns; restore or fix it"
        ),
        transient: false,
    })
}

/// Saves atomically: the state dir made (0700) when missing, a temp file (0600) beside the
/// inventory, fsync, rename, fsync of the folder.
pub(crate) fn save(
    path: &Path,
    inventory: &Inventory,
    counter: &AtomicU64,
) -> Result<(), HostError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(path, format!("cannot make the state dir: {e}")))?;
    }
    let mut json = serde_json::to_vec_pretty(inventory)
        .map_err(|e| error(path, format!("cannot serialise it: {e}")))?;
    json.push(b'\n');
    let staged = fs::stage_unchecked(path, &json, 0o600, None, counter)
        .map_err(|e| error(path, format!("cannot write it: {e}")))?;
    staged
        .commit()
        .map_err(|e| error(path, format!("cannot write it: {e}")))
}
