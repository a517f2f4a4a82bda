//! Images: pulled when missing (or always, with `pull_policy: always`), once per plan however
//! many services use them. A service that cannot get an image (`build:`, `pull_policy: never`
//! with the image absent) is an error, and its containers are not planned.

use std::collections::BTreeMap;

use super::{Context, Planned};
use crate::model::{PullPolicy, ServiceSpec, normalize_image_ref};
use crate::plan::{Addr, Change, ImagePayload, Op, Payload, PlanError, PullReason, ServiceRef};

/// Whether a service's image can be had; `Err` is the plan error that stops it.
pub fn usable(
    stack: &str,
    service: &str,
    spec: &ServiceSpec,
    ctx: &Context,
) -> Result<(), PlanError> {
    if spec.build {
        return Err(PlanError::BuildNotSupported {
            stack: stack.to_string(),
            service: service.to_string(),
        });
    }
    let present = ctx
        .observed
        .images
        .contains_key(&normalize_image_ref(&spec.image));
    if spec.pull_policy == PullPolicy::Never && !present {
        return Err(PlanError::ImageMissing {
            stack: stack.to_string(),
            service: service.to_string(),
            image: spec.image.clone(),
        });
    }
    Ok(())
}

/// The pulls the desired state needs, one change per image.
pub fn plan(ctx: &Context, out: &mut Planned) {
    let mut pulls: BTreeMap<String, (PullReason, Vec<ServiceRef>)> = BTreeMap::new();
    for stack in ctx.desired.stacks.values() {
        for (service, spec) in &stack.services {
            if let Err(e) = usable(&stack.name, service, spec, ctx) {
                out.plan.errors.push(e);
                continue;
            }
            let present = ctx
                .observed
                .images
                .contains_key(&normalize_image_ref(&spec.image));
            let reason = match (spec.pull_policy, present) {
                (_, false) => PullReason::Missing,
                (PullPolicy::Always, true) => PullReason::Always,
                _ => continue,
            };
            let entry = pulls
                .entry(spec.image.clone())
                .or_insert_with(|| (reason, Vec::new()));
            if reason == PullReason::Missing {
                entry.0 = PullReason::Missing;
            }
            entry.1.push(ServiceRef {
                stack: stack.name.clone(),
                service: service.clone(),
            });
        }
    }
    for (image, (reason, services)) in pulls {
        out.changes.push(Change {
            addr: Addr::image(&image),
            op: Op::Pull,
            reasons: Vec::new(),
            needs: Vec::new(),
            payload: Payload::Image(ImagePayload {
                image,
                reason,
                services,
            }),
        });
    }
}
