//! Test data shared by the adapter's unit tests.

use std::path::PathBuf;

use crate::model::StackSpec;

pub(super) fn stack() -> StackSpec {
    StackSpec {
        name: "web".into(),
        file: PathBuf::from("web/compose.yaml"),
        dir: PathBuf::from("/srv/config/web"),
        ..Default::default()
    }
}
