//! Firewall changes: record the new entry (unconfirmed: `live: None`) before acting, let the
//! host replace the table with its confirm timer, then record the live digest it confirmed.
//! A change that fails or is not confirmed puts the previous record back (the host has put
//! the previous ruleset back).

use super::{ApplyEvent, Driver, Exec, HostDriver, StepError};
use crate::model::host::Before;
use crate::plan::{Change, FirewallPayload, Op};

impl<D: Driver, H: HostDriver> Exec<'_, D, H> {
    pub(super) async fn firewall(&self, c: &Change, p: &FirewallPayload) -> Result<(), StepError> {
        let addr = c.addr.to_string();
        let fail = |message: String, transient: bool| StepError::Host {
            addr: c.addr.clone(),
            transient,
            message,
        };
        if let Some(after) = &p.record.after
            && p.record.after != p.record.before
        {
            self.host
                .record(&addr, Some(after))
                .await
                .map_err(|e| fail(e.to_string(), e.is_transient()))?;
        }
        let remove = c.op == Op::Delete;
        match self
            .host
            .firewall(p, remove, &self.opts.firewall_confirm)
            .await
        {
            Ok(done) => {
                let entry = p.record.after.clone().map(|mut e| {
                    if let Before::Firewall { live, zone, .. } = &mut e.before {
                        *live = done.live;
                        *zone = done.zone;
                    }
                    e
                });
                self.host
                    .record(&addr, entry.as_ref())
                    .await
                    .map_err(|e| fail(e.to_string(), e.is_transient()))?;
                self.emit(ApplyEvent::Host {
                    addr: addr.clone(),
                    did: if remove {
                        "table inet berth removed".into()
                    } else {
                        format!(
                            "table inet berth replaced and confirmed ({} rules)",
                            p.rules.len()
                        )
                    },
                });
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                if p.record.after != p.record.before {
                    // The record goes back with the ruleset.
                    let _ = self.host.record(&addr, p.record.before.as_ref()).await;
                }
                Err(fail(message, e.is_transient()))
            }
        }
    }
}
