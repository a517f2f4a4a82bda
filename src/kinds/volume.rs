//! Volumes: created when a stack declares one the Engine lacks. Removed only with
//! `--prune-volumes` (their data goes with them), when berth owns the volume and no declared
//! stack uses it — including the volumes of a stack that left the config.

use super::objects::{plan_creates, plan_deletes};
use super::{Context, Planned};
use crate::model::VolumeSpec;

pub fn plan(ctx: &Context, out: &mut Planned) {
    plan_creates::<VolumeSpec>(ctx, out);
    if ctx.opts.prune_volumes {
        plan_deletes::<VolumeSpec>(ctx, out);
    }
}
