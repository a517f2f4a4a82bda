//! Networks: created when a stack declares one the Engine lacks; removed when berth owns it and
//! no declared stack uses it any more. An `external` network must exist — or be created by
//! another stack of the same config, in which case the plan orders that stack's create first.

use super::objects::{plan_creates, plan_deletes};
use super::{Context, Planned};
use crate::model::NetworkSpec;

pub fn plan(ctx: &Context, out: &mut Planned) {
    plan_creates::<NetworkSpec>(ctx, out);
    plan_deletes::<NetworkSpec>(ctx, out);
}
