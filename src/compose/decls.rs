//! What converting one file's services needs from its top level: the declared networks,
//! volumes, secrets and configs ([`Decls`]), and what each service leaves to cross-service checks
//! ([`SvcMeta`]). Shared by `stack` (which fills them) and `service` & co. (which read them).

use std::collections::BTreeMap;

use super::yaml::Pos;
use crate::model::*;

/// A secret or config declared at top level.
#[derive(Clone)]
pub(super) struct FileObj {
    pub(super) file: String,
    pub(super) digest: String,
    pub(super) content: Option<Secret>,
    /// `external: true`: declared, but there is nothing to mount on a single Engine.
    pub(super) external: bool,
}

pub(super) struct Decls {
    pub(super) networks: BTreeMap<String, NetworkSpec>,
    pub(super) volumes: BTreeMap<String, VolumeSpec>,
    pub(super) secrets: BTreeMap<String, Option<FileObj>>,
    pub(super) configs: BTreeMap<String, Option<FileObj>>,
}

/// What one service needs checked against the others.
pub(super) struct SvcMeta {
    pub(super) pos: Pos,
    pub(super) profiles: Vec<String>,
    pub(super) depends: Vec<(String, Pos, bool)>,
    pub(super) network_mode_service: Option<(String, Pos)>,
    /// `links` entries (`service[:alias]`) with where.
    pub(super) links: Vec<(String, Pos)>,
    /// Services named in `volumes_from`, with where.
    pub(super) volumes_from: Vec<(String, Pos)>,
    pub(super) uses_default_network: bool,
    /// `x-berth.routes`: collected onto the stack when the service is deployed.
    pub(super) routes: Vec<crate::model::edge::RouteSpec>,
}
