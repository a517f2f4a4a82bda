//! Removing unused images (`kind: Prune`): what no container — berth's or anyone's, running or
//! stopped — uses, and what the caller does not keep (the images of the current and recent
//! applied configs, so that a `git revert` always finds its image).

use std::collections::BTreeSet;

use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};

use super::{DockerError, Engine};
use crate::model::normalize_image_ref;

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Tags (or IDs of untagged images) removed.
    pub removed: Vec<String>,
    /// Images left because a container uses them.
    pub in_use: usize,
    /// Images left because a recent applied config names them.
    pub kept: usize,
    /// Removals the Engine refused (a container created meanwhile, a child image): left.
    pub refused: Vec<String>,
}

impl Engine {
    /// Removes every image no container uses whose references and ID are all outside `keep`
    /// (normalised references such as `docker.io/library/redis:7`, or `sha256:` IDs). A tagged
    /// image goes tag by tag (the last one deletes it), never with `force`. Requests: 2, plus
    /// one per removal.
    pub async fn prune_images(&self, keep: &BTreeSet<String>) -> Result<Pruned, DockerError> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list containers", e))?;
        let used: BTreeSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list images", e))?;
        let mut out = Pruned::default();
        for img in images {
            if used.contains(&img.id) {
                out.in_use += 1;
                continue;
            }
            let tags: Vec<&String> = img
                .repo_tags
                .iter()
                .filter(|t| !t.starts_with("<none>"))
                .collect();
            let named = img
                .repo_tags
                .iter()
                .chain(img.repo_digests.iter())
                .filter(|r| !r.starts_with("<none>"))
                .any(|r| keep.contains(&normalize_image_ref(r)));
            if named || keep.contains(&img.id) {
                out.kept += 1;
                continue;
            }
            let targets: Vec<String> = if tags.is_empty() {
                vec![img.id.clone()]
            } else {
                tags.into_iter().cloned().collect()
            };
            for t in targets {
                let opts = RemoveImageOptions {
                    force: false,
                    noprune: false,
                    ..Default::default()
                };
                match self.docker.remove_image(&t, Some(opts), None).await {
                    Ok(_) => out.removed.push(t),
                    Err(e) => match self.err(format!("remove image {t}"), e) {
                        DockerError::NotFound { .. } => {}
                        DockerError::Conflict { .. } => out.refused.push(t),
                        e => return Err(e),
                    },
                }
            }
        }
        Ok(out)
    }
}
