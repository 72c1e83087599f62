//! Unix identities and container images: the server's side of running tasks as their owners.
//!
//! This module owns the policy an operator configures (the uid range users are allocated from,
//! the gid range of project groups, and the allow-list of container registries and root file
//! system directories) and the checks on what tenants send against it: uids and gids given to
//! users (never 0, never an agent's own uid) and the images jobs ask for.

use crate::error::ApiError;
pub use haneul_store::IdRange;
use std::path::{Path, PathBuf};

/// What the operator configures about identities and container images.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// Users' uids (and their private primary gids) are allocated from here.
    pub uid_range: IdRange,
    /// Projects' group ids are allocated from here.
    pub project_gid_range: IdRange,
    /// Registries (or registry/namespace prefixes) container images may come from, e.g.
    /// `nvcr.io/nvidia` or `docker.io/library`. Empty: no OCI image is accepted.
    pub container_registries: Vec<String>,
    /// Directories root file systems and `.sif` files may lie under. Empty: no path image is
    /// accepted.
    pub container_rootfs_dirs: Vec<PathBuf>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            uid_range: IdRange::USERS,
            project_gid_range: IdRange::PROJECTS,
            container_registries: Vec::new(),
            container_rootfs_dirs: Vec::new(),
        }
    }
}

/// Highest id accepted: Linux ids are 32-bit and `(uid_t)-1` means "unchanged" to setuid.
pub const MAX_ID: i64 = u32::MAX as i64 - 1;

impl IdentityPolicy {
    /// Checks the ranges: non-empty, above 0, and disjoint (a project group must never be a
    /// user's private group).
    pub fn validate(&self) -> Result<(), String> {
        for (flag, r) in [
            ("--uid-range", self.uid_range),
            ("--project-gid-range", self.project_gid_range),
        ] {
            if r.first < 1 || r.last > MAX_ID || r.first > r.last {
                return Err(format!(
                    "{flag} {}-{}: give FIRST-LAST with 1 <= FIRST <= LAST <= {MAX_ID}",
                    r.first, r.last
                ));
            }
        }
        let (u, p) = (self.uid_range, self.project_gid_range);
        if u.first <= p.last && p.first <= u.last {
            return Err(format!(
                "--uid-range {}-{} overlaps --project-gid-range {}-{}: users' private groups \
                 would collide with project groups",
                u.first, u.last, p.first, p.last
            ));
        }
        for d in &self.container_rootfs_dirs {
            if !d.is_absolute() {
                return Err(format!(
                    "--container-rootfs-dir {}: must be an absolute path",
                    d.display()
                ));
            }
        }
        Ok(())
    }

    /// Refuses an image the allow-list does not cover, naming the rule. The image's form was
    /// already checked (`convert::job_spec`).
    pub fn check_image(&self, image: &str) -> Result<(), ApiError> {
        const FIELD: &str = "container_image";
        if image.starts_with('/') {
            let path = Path::new(image);
            if self
                .container_rootfs_dirs
                .iter()
                .any(|d| path.starts_with(d))
            {
                return Ok(());
            }
            return Err(ApiError::bad(
                FIELD,
                format!(
                    "{image} is not under a root file system directory this centre allows \
                     (server --container-rootfs-dir: {})",
                    list(
                        self.container_rootfs_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                    )
                ),
            ));
        }
        let name = normalise_reference(image);
        let allowed = self.container_registries.iter().any(|r| {
            let r = r.trim_end_matches('/');
            name == r || name.starts_with(&format!("{r}/"))
        });
        if allowed {
            return Ok(());
        }
        Err(ApiError::bad(
            FIELD,
            format!(
                "image {image} ({name}) is not from a registry this centre allows \
                 (server --container-registry: {})",
                list(self.container_registries.iter().cloned())
            ),
        ))
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none configured".into()
    } else {
        v.join(", ")
    }
}

/// An OCI reference with its registry spelled out (`ubuntu:24.04` is
/// `docker.io/library/ubuntu:24.04`): what the server stores, so that a node's own short-name
/// resolution (`registries.conf`) cannot fetch the image from a registry the allow-list did not
/// check. Paths stay as they are.
pub fn qualified(image: &str) -> String {
    if image.starts_with('/') {
        return image.to_string();
    }
    let repo = normalise_reference(image);
    let added = repo.len().saturating_sub(repository(image).len());
    format!("{}{image}", &repo[..added])
}

fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// The repository of an OCI reference with its registry spelled out, as podman resolves short
/// names with Docker Hub as the default: `ubuntu:24.04` is `docker.io/library/ubuntu`,
/// `nvcr.io/nvidia/pytorch:24.10-py3` stays `nvcr.io/nvidia/pytorch`. The tag and digest are
/// dropped.
pub fn normalise_reference(image: &str) -> String {
    // A tag is a `:` after the last `/` (a `:` before it is a registry's port).
    let repo = repository(image);
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    }
}

/// Checks a uid or gid a user is given: 1 to [`MAX_ID`]; a uid must not be an agent's.
pub fn check_id(field: &str, id: i64, agent_uids: &[i64]) -> Result<(), ApiError> {
    if id == 0 {
        return Err(ApiError::bad(
            field,
            "0 is root: tasks never run as root; give an id of 1 or more (or leave it out to \
             have one allocated)",
        ));
    }
    if !(1..=MAX_ID).contains(&id) {
        return Err(ApiError::bad(field, format!("must be 1 to {MAX_ID}")));
    }
    if field == "uid" && agent_uids.contains(&id) {
        return Err(ApiError::bad(
            field,
            format!(
                "{id} is the uid a node agent runs as: a task with it could control the agent; \
                 give the user another uid"
            ),
        ));
    }
    Ok(())
}

/// Parses `FIRST-LAST` (a flag's value).
pub fn parse_range(v: &str) -> Result<IdRange, String> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| format!("{v:?}: expected FIRST-LAST, e.g. 200000-299999"))?;
    let p = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("{v:?}: expected FIRST-LAST, e.g. 200000-299999"))
    };
    Ok(IdRange {
        first: p(a)?,
        last: p(b)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised() {
        assert_eq!(normalise_reference("ubuntu"), "docker.io/library/ubuntu");
        assert_eq!(
            normalise_reference("ubuntu:24.04"),
            "docker.io/library/ubuntu"
        );
        assert_eq!(normalise_reference("kim/tool:1"), "docker.io/kim/tool");
        assert_eq!(
            normalise_reference("nvcr.io/nvidia/pytorch:24.10-py3"),
            "nvcr.io/nvidia/pytorch"
        );
        assert_eq!(
            normalise_reference("registry.local:5000/x/y@sha256:abcd"),
            "registry.local:5000/x/y"
        );
        assert_eq!(normalise_reference("localhost/img"), "localhost/img");
        assert_eq!(qualified("ubuntu:24.04"), "docker.io/library/ubuntu:24.04");
        assert_eq!(
            qualified("kim/tool@sha256:ab"),
            "docker.io/kim/tool@sha256:ab"
        );
        assert_eq!(qualified("nvcr.io/nvidia/x:1"), "nvcr.io/nvidia/x:1");
        assert_eq!(qualified("/srv/images/a"), "/srv/images/a");
    }

    fn reason(e: ApiError) -> (String, String) {
        match e {
            ApiError::BadRequest { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn images_are_checked_against_the_allow_list() {
        let p = IdentityPolicy {
            container_registries: vec!["nvcr.io/nvidia".into(), "docker.io/library".into()],
            container_rootfs_dirs: vec![PathBuf::from("/srv/images")],
            ..IdentityPolicy::default()
        };
        for ok in [
            "nvcr.io/nvidia/pytorch:24.10-py3",
            "ubuntu:24.04",
            "/srv/images/busybox",
            "/srv/images/a.sif",
        ] {
            assert!(p.check_image(ok).is_ok(), "{ok}");
        }
        let (field, why) = reason(p.check_image("nvcr.io/nvidiax/evil").unwrap_err());
        assert_eq!(field, "container_image");
        assert!(
            why.contains("--container-registry") && why.contains("nvcr.io/nvidia"),
            "{why}"
        );
        let (_, why) = reason(p.check_image("kim/tool").unwrap_err());
        assert!(why.contains("docker.io/kim/tool"), "{why}");
        let (_, why) = reason(p.check_image("/srv/imagesX/busybox").unwrap_err());
        assert!(
            why.contains("--container-rootfs-dir") && why.contains("/srv/images"),
            "{why}"
        );
        let (_, why) = reason(
            IdentityPolicy::default()
                .check_image("/srv/images/a")
                .unwrap_err(),
        );
        assert!(why.contains("none configured"), "{why}");
    }

    #[test]
    fn ids_are_checked() {
        let (field, why) = reason(check_id("uid", 0, &[]).unwrap_err());
        assert_eq!(field, "uid");
        assert!(why.contains("root"), "{why}");
        let (_, why) = reason(check_id("uid", 1000, &[1000]).unwrap_err());
        assert!(why.contains("agent"), "{why}");
        assert!(check_id("gid", 1000, &[1000]).is_ok());
        assert!(check_id("gid", -1, &[]).is_err());
        assert!(check_id("uid", u32::MAX as i64, &[]).is_err());
        assert!(check_id("uid", 200_000, &[0]).is_ok());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("1-2").unwrap(), IdRange { first: 1, last: 2 });
        assert!(parse_range("12").is_err());
        let mut p = IdentityPolicy::default();
        assert!(p.validate().is_ok());
        p.project_gid_range = IdRange {
            first: 250_000,
            last: 350_000,
        };
        assert!(p.validate().unwrap_err().contains("overlaps"));
        p.project_gid_range = IdRange { first: 0, last: 5 };
        assert!(p.validate().unwrap_err().contains("--project-gid-range"));
    }
}
