//! Host changes: files, directories, sysctls and units, each applied whole or put back.

use super::{Driver, Exec, StepError};
use crate::plan::Change;

impl<D: Driver> Exec<'_, D> {
    pub(super) async fn host(&self, c: &Change) -> Result<(), StepError> {
        Err(StepError::Host {
            addr: c.addr.to_string(),
            message: "host changes are not applied yet".into(),
            transient: false,
        })
    }
}
