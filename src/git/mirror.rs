//! The bare mirror: open or clone, ref look-ups without a fetch, fetch, ancestry, commits.

use std::path::Path;
use std::sync::Arc;

use gix::remote::Direction;

use super::*;

impl Mirror {
    /// Open the bare mirror at `dir`, or clone it from `opts.url` when it is missing, broken,
    /// unfinished, or a mirror of another URL (the folder is removed first; a warning says why).
    pub fn open_or_clone(dir: &Path, opts: &MirrorOptions) -> Result<Mirror, GitError> {
        let remote = Arc::new(Remote::new(opts));
        if dir.exists() {
            match Self::open_existing(dir, &remote) {
                Ok(mirror) => return Ok(mirror),
                Err(reason) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        url = %remote.url_redacted,
                        "removing the git mirror and cloning it again: {reason}"
                    );
                    std::fs::remove_dir_all(dir).map_err(|e| GitError::io(dir, e))?;
                }
            }
        }
        Self::clone(dir, remote)
    }

    /// The mirror at `dir` if it is a finished mirror of the remote's URL, else why not.
    fn open_existing(dir: &Path, remote: &Arc<Remote>) -> Result<Mirror, String> {
        let repo =
            gix::ThreadSafeRepository::open_opts(dir, remote.open_options()).map_err(|e| {
                format!(
                    "it is not a git repository ({})",
                    remote.scrub(&error_text(&e))
                )
            })?;
        let local = repo.to_thread_local();
        if !local.is_bare() {
            return Err("it is not a bare repository".to_owned());
        }
        let url = local
            .config_snapshot()
            .string("remote.origin.url")
            .map(|u| u.to_string());
        match url {
            Some(url) if url == remote.url => Ok(Mirror {
                dir: dir.to_owned(),
                repo,
                remote: remote.clone(),
            }),
            Some(url) => Err(format!(
                "it mirrors {} instead of {}",
                redact_url(&url),
                remote.url_redacted
            )),
            None => Err("an earlier clone did not finish".to_owned()),
        }
    }

    fn clone(dir: &Path, remote: Arc<Remote>) -> Result<Mirror, GitError> {
        let mirror_err = |e: gix::Error| GitError::Mirror {
            path: dir.to_owned(),
            message: remote.scrub(&error_text(&e)),
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::io(parent, e))?;
        }
        let started = std::time::Instant::now();
        let repo = gix::ThreadSafeRepository::init_opts(
            dir,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            remote.open_options(),
        )
        .map_err(mirror_err)?;
        let mirror = Mirror {
            dir: dir.to_owned(),
            repo,
            remote: remote.clone(),
        };
        let result = mirror
            .fetch_op("clone", vec![BRANCHES_REFSPEC.to_owned()])
            .and_then(|()| mirror.save_remote_config());
        match result {
            Ok(()) => {
                tracing::info!(
                    dir = %dir.display(),
                    url = %remote.url_redacted,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "cloned git mirror"
                );
                Ok(mirror)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir);
                Err(e)
            }
        }
    }

    /// Persist `remote.origin` (URL and branch refspec): marks the clone as finished and lets a
    /// human run `git fetch` in the mirror. No credentials are written.
    fn save_remote_config(&self) -> Result<(), GitError> {
        let path = self.dir.join("config");
        let err = |message: String| GitError::Mirror {
            path: path.clone(),
            message,
        };
        let mut file =
            gix::config::File::from_path_no_includes(path.clone(), gix::config::Source::Local)
                .map_err(|e| err(error_text(&e)))?;
        file.set_raw_value_by("remote", Some("origin".into()), "fetch", BRANCHES_REFSPEC)
            .map_err(|e| err(error_text(&e)))?;
        file.set_raw_value_by(
            "remote",
            Some("origin".into()),
            "url",
            self.remote.url.as_str(),
        )
        .map_err(|e| err(error_text(&e)))?;
        let mut buf = Vec::new();
        file.write_to(&mut buf).map_err(|e| err(e.to_string()))?;
        let tmp = self.dir.join("config.berth-tmp");
        std::fs::write(&tmp, &buf).map_err(|e| GitError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| GitError::io(&path, e))?;
        Ok(())
    }

    /// The folder of the bare repository.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The remote's URL with credentials redacted (for logs).
    pub fn url_redacted(&self) -> &str {
        &self.remote.url_redacted
    }

    /// The remote's current commit for `refname` (e.g. `refs/heads/main`) from one ref
    /// advertisement, without fetching objects. `Ok(None)` when the remote has no such ref.
    /// Annotated tags are peeled to their commit.
    pub fn remote_ref(&self, refname: &str) -> Result<Option<String>, GitError> {
        let repo = self.repo.clone();
        let remote = self.remote.clone();
        let refname = refname.to_owned();
        self.remote.with_deadline("ls-refs", move |_interrupt| {
            let op = "ls-refs";
            let repo = repo.to_thread_local();
            let net = |e: gix::Error| remote.net_error(op, &e);
            let spec = repo
                .remote_at(remote.url.as_str())
                .map_err(net)?
                .with_refspecs([refname.as_str()], Direction::Fetch)
                .map_err(|e| {
                    GitError::Invalid(format!("bad ref name {refname:?}: {}", error_text(&e)))
                })?
                .with_fetch_tags(gix::remote::fetch::Tags::None);
            let connection = remote.connect(&repo, &spec, op)?;
            let (ref_map, _handshake) = connection
                .ref_map(gix::progress::Discard, Default::default())
                .map_err(net)?;
            Ok(ref_map.remote_refs.iter().find_map(|r| {
                let (name, target, peeled) = r.unpack();
                (name == refname.as_bytes())
                    .then(|| peeled.or(target).map(|id| id.to_hex().to_string()))
                    .flatten()
            }))
        })
    }

    /// The mirror's value of `refname`, peeled to an object id.
    pub fn local_ref(&self, refname: &str) -> Result<Option<String>, GitError> {
        let repo = self.repo.to_thread_local();
        let reference = repo.try_find_reference(refname).map_err(|e| {
            GitError::Invalid(format!("bad ref name {refname:?}: {}", error_text(&e)))
        })?;
        match reference {
            None => Ok(None),
            Some(mut r) => {
                let id = r.peel_to_id().map_err(|e| GitError::NotFound {
                    what: format!("the object of {refname}"),
                    detail: error_text(&e),
                })?;
                Ok(Some(id.to_hex().to_string()))
            }
        }
    }

    /// Fetch `refspecs` (e.g. [`BRANCHES_REFSPEC`], `+refs/pull/1/head:refs/pull/1/head`),
    /// transferring only missing objects and updating local refs (forced updates included when
    /// the refspec says `+`). A source ref the remote does not have is no error: its local ref
    /// is left alone. An empty list fetches all branches.
    pub fn fetch(&self, refspecs: &[String]) -> Result<(), GitError> {
        let refspecs = if refspecs.is_empty() {
            vec![BRANCHES_REFSPEC.to_owned()]
        } else {
            refspecs.to_vec()
        };
        self.fetch_op("fetch", refspecs)
    }

    fn fetch_op(&self, op: &'static str, refspecs: Vec<String>) -> Result<(), GitError> {
        let repo = self.repo.clone();
        let remote = self.remote.clone();
        let started = std::time::Instant::now();
        self.remote.with_deadline(op, move |interrupt| {
            let repo = repo.to_thread_local();
            let net = |e: gix::Error| remote.net_error(op, &e);
            let spec = repo
                .remote_at(remote.url.as_str())
                .map_err(net)?
                .with_refspecs(refspecs.iter().map(String::as_str), Direction::Fetch)
                .map_err(|e| {
                    GitError::Invalid(format!("bad refspec in {refspecs:?}: {}", error_text(&e)))
                })?
                .with_fetch_tags(gix::remote::fetch::Tags::None);
            let connection = remote.connect(&repo, &spec, op)?;
            let outcome = connection
                .prepare_fetch(gix::progress::Discard, Default::default())
                .map_err(net)?
                .with_reflog_message(gix::remote::fetch::RefLogMessage::Override {
                    message: format!("berth: {op}").into(),
                })
                .receive(gix::progress::Discard, interrupt)
                .map_err(net)?;
            let updates = match &outcome.status {
                gix::remote::fetch::Status::NoPackReceived { update_refs, .. }
                | gix::remote::fetch::Status::Change { update_refs, .. } => update_refs,
            };
            let rejected: Vec<String> = updates
                .updates
                .iter()
                .zip(outcome.ref_map.mappings.iter())
                .filter(|(u, _)| {
                    use gix::remote::fetch::refs::update::Mode;
                    !matches!(
                        u.mode,
                        Mode::NoChangeNeeded
                            | Mode::FastForward
                            | Mode::Forced
                            | Mode::New
                            | Mode::ImplicitTagNotSentByRemote
                    )
                })
                .map(|(u, m)| format!("{:?}: {}", m.remote, u.mode))
                .collect();
            if !rejected.is_empty() {
                return Err(GitError::Internal {
                    op,
                    message: format!("ref updates rejected: {}", rejected.join(", ")),
                });
            }
            tracing::debug!(
                op,
                url = %remote.url_redacted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                refs = updates.edits.len(),
                "fetched"
            );
            Ok(())
        })
    }

    /// Whether `ancestor` is an ancestor of, or equal to, `descendant` (both commits present
    /// locally).
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let repo = self.repo.to_thread_local();
        let a = self.commit_id(&repo, ancestor)?;
        let d = self.commit_id(&repo, descendant)?;
        if a == d {
            return Ok(true);
        }
        match repo.merge_base(a, d) {
            Ok(base) => Ok(base.is_some_and(|b| b.detach() == a)),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(GitError::Internal {
                op: "merge-base",
                message: error_text(&e),
            }),
        }
    }

    /// Whether a commit object `commit` is present locally.
    pub fn has_commit(&self, commit: &str) -> bool {
        let repo = self.repo.to_thread_local();
        self.commit_id(&repo, commit).is_ok()
    }

    /// `<summary> (<author name>)` of a commit, for logs and status texts.
    pub fn commit_summary(&self, commit: &str) -> Result<String, GitError> {
        let repo = self.repo.to_thread_local();
        let id = self.commit_id(&repo, commit)?;
        let commit = repo
            .find_commit(id)
            .map_err(|e| not_found(commit_what(&id), &e))?;
        let corrupt = |e: gix::Error| GitError::Internal {
            op: "read commit",
            message: error_text(&e),
        };
        let summary = commit.message().map_err(corrupt)?.summary().to_string();
        let author = commit.author().map_err(corrupt)?.name.to_string();
        Ok(format!("{summary} ({author})"))
    }

    /// Write the files of `commit`'s tree under `subpath` (`""` = the root) into `dest`, which is
    /// created and must not exist. Executable bits are kept; symlinks are written as symlinks
    /// unless their target is absolute or leaves `dest` (an error); submodules are skipped with
    /// a warning. On error `dest` is removed again.
    pub fn export_tree(&self, commit: &str, subpath: &str, dest: &Path) -> Result<(), GitError> {
        let repo = self.repo.to_thread_local();
        let id = self.commit_id(&repo, commit)?;
        let tree = repo
            .find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|e| not_found(format!("the tree of commit {id}"), &e))?;
        let subpath = subpath.trim_matches('/');
        let tree = if subpath.is_empty() {
            tree
        } else {
            let rel = validate_rel_path(subpath)?;
            let entry = tree
                .lookup_entry_by_path(&rel)
                .map_err(|e| not_found(format!("{subpath:?} in commit {id}"), &e))?
                .ok_or_else(|| GitError::NotFound {
                    what: format!("folder {subpath:?} in commit {id}"),
                    detail: String::new(),
                })?;
            if !entry.mode().is_tree() {
                return Err(GitError::Invalid(format!(
                    "{subpath:?} in commit {id} is not a folder"
                )));
            }
            entry
                .object()
                .map_err(|e| not_found(format!("the tree {subpath:?} in commit {id}"), &e))?
                .into_tree()
        };
        if dest.symlink_metadata().is_ok() {
            return Err(GitError::Invalid(format!(
                "export destination {} already exists",
                dest.display()
            )));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::io(parent, e))?;
        }
        std::fs::create_dir(dest).map_err(|e| GitError::io(dest, e))?;
        let result =
            set_folder_mode(dest).and_then(|()| write_tree(&repo, &tree, dest, Path::new("")));
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dest);
        }
        result
    }

    /// `commit` as the id of a commit present in the mirror.
    fn commit_id(&self, repo: &gix::Repository, commit: &str) -> Result<gix::ObjectId, GitError> {
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|_| GitError::Invalid(format!("{commit:?} is not a full commit id")))?;
        match repo.find_header(id) {
            Ok(header) if header.kind() == gix::object::Kind::Commit => Ok(id),
            Ok(header) => Err(GitError::Invalid(format!(
                "{id} is a {} and not a commit",
                header.kind()
            ))),
            Err(e) => Err(not_found(commit_what(&id), &e)),
        }
    }
}

pub(super) fn commit_what(id: &gix::ObjectId) -> String {
    format!("commit {id}")
}

pub(super) fn not_found(what: String, err: &gix::Error) -> GitError {
    GitError::NotFound {
        what,
        detail: error_text(err),
    }
}
