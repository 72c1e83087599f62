//! Whose account a task runs as: the job owner's Unix ids as the server sends them, checked.
//!
//! The server keeps a uid and primary gid for every user and a group for every project
//! (docs/server.md). An agent running as root starts each task with `setgroups`, `setgid` and
//! `setuid` to those ids ([`crate::launch`]); no `/etc/passwd` entry is needed. This module owns
//! the choice of mode at start-up ([`choose`]) and the checks on the ids of each task
//! ([`owner_identity`]): never root, never the agent's own account.

use crate::launch::Identity;
use crate::{AgentError, Result};

/// How the agent picks the account of its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskUser {
    /// The job owner's uid, gid and project group from the server (the agent is root).
    Owner,
    /// The agent's own account (the agent is not root: it cannot switch). Every task shares
    /// it, and so can read every other task's files and the agent's token.
    Agent,
    /// The Unix account named like the job's user in the node's user database, else `fallback`
    /// (`None`: refuse). Kept for sites whose accounts come from LDAP under the same names.
    Submitter { fallback: Option<String> },
}

/// The mode for `--task-user` (`auto`, `owner`, `agent` or `submitter`), given the agent's
/// effective uid. `auto` is `owner` for root and `agent` otherwise; `owner` and `submitter`
/// need root, and a root agent refuses `agent` (its tasks would be root).
pub fn choose(flag: &str, fallback: &str, euid: u32) -> Result<TaskUser> {
    let root = euid == 0;
    let mode = match flag {
        "auto" if root => "owner",
        "auto" => "agent",
        other => other,
    };
    match mode {
        "owner" | "submitter" if !root => Err(AgentError::Identity(format!(
            "--task-user {mode} needs the agent to run as root (it switches to each job's \
             owner); run it as root, or pass --task-user agent to share this account with \
             every task"
        ))),
        "agent" if root => Err(AgentError::Identity(
            "--task-user agent with an agent running as root would run every task as root; \
             leave --task-user out (tasks then run as their owners) or run the agent as an \
             unprivileged account"
                .into(),
        )),
        "owner" => Ok(TaskUser::Owner),
        "agent" => Ok(TaskUser::Agent),
        "submitter" => Ok(TaskUser::Submitter {
            fallback: (fallback != "none").then(|| fallback.to_string()),
        }),
        other => Err(AgentError::Identity(format!(
            "--task-user {other}: expected auto, owner, agent or submitter"
        ))),
    }
}

/// The warning an agent in [`TaskUser::Agent`] mode logs at start-up.
pub fn shared_account_warning(euid: u32) -> String {
    format!(
        "TASKS SHARE THE AGENT'S ACCOUNT (uid {euid}): every task can read every other task's \
         files, the agent's token and its work directory. Run the agent as root so that tasks \
         run as their owners"
    )
}

/// The account of a task of user `name` from the ids the server sent (`uid`, `gid`, the
/// project group in `groups`). Refused: no uid (the user has none yet), uid or gid 0, a group
/// 0, and the agent's own uid `agent_uid` (the task could then signal or trace the agent).
pub fn owner_identity(
    name: &str,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: &[u32],
    agent_uid: u32,
) -> Result<Identity> {
    let Some(uid) = uid else {
        return Err(AgentError::Identity(format!(
            "user `{name}` has no Unix uid: a centre administrator gives one with `haneul user \
             update ID --uid UID`"
        )));
    };
    if uid == 0 {
        return Err(AgentError::Identity(format!(
            "user `{name}` has uid 0: tasks never run as root"
        )));
    }
    if uid == agent_uid {
        return Err(AgentError::Identity(format!(
            "user `{name}` has uid {uid}, the agent's own: the task could control the agent"
        )));
    }
    let gid = gid.unwrap_or(uid);
    if gid == 0 || groups.contains(&0) {
        return Err(AgentError::Identity(format!(
            "user `{name}` would run with group 0 (root's): refused"
        )));
    }
    let mut all = vec![gid];
    for g in groups {
        if !all.contains(g) {
            all.push(*g);
        }
    }
    Ok(Identity {
        name: name.to_string(),
        uid,
        gid,
        groups: all,
    })
}

/// The account task of user `user_name` runs as under `mode`, from the ids the server sent;
/// `None`: the agent's own ([`TaskUser::Agent`]). An error says why the task is refused.
pub fn task_identity(
    mode: &TaskUser,
    user_name: &str,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: &[u32],
    agent_uid: u32,
) -> Result<Option<Identity>> {
    match mode {
        TaskUser::Agent => Ok(None),
        TaskUser::Owner => owner_identity(user_name, uid, gid, groups, agent_uid).map(Some),
        TaskUser::Submitter { fallback } => {
            let found = crate::launch::lookup_user(user_name)
                .or_else(|| fallback.as_deref().and_then(crate::launch::lookup_user));
            let Some(id) = found else {
                return Err(AgentError::Identity(format!(
                    "no Unix account `{user_name}` on this node and --fallback-user is none"
                )));
            };
            if id.uid == 0 || id.uid == agent_uid {
                return Err(AgentError::Identity(format!(
                    "the Unix account `{}` is root or the agent's own: refused",
                    id.name
                )));
            }
            Ok(Some(id))
        }
    }
}

/// Creates the agent's work directory as 0711 (tasks running as their owners pass through it
/// to their own 0700 directories; none can list it) and checks that every directory above it
/// lets others pass too, naming the one that does not.
pub fn prepare_work_root(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| AgentError::io(format!("cannot create --work-dir {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| AgentError::io(format!("cannot set the mode of {}", dir.display()), e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| AgentError::io(format!("cannot resolve {}", dir.display()), e))?;
    for a in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(a)
            .map_err(|e| AgentError::io(format!("cannot read {}", a.display()), e))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(AgentError::Identity(format!(
                "--work-dir {}: {} is mode {:04o}, so tasks running as their owners cannot reach \
                 their directories; give it o+x (chmod o+x {}) or choose another --work-dir",
                dir.display(),
                a.display(),
                mode & 0o7777,
                a.display()
            )));
        }
    }
    Ok(())
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The real uid of process `pid` (`Uid:` of `/proc/PID/status`).
pub fn process_uid(pid: libc::pid_t) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(choose("auto", "nobody", 0).unwrap(), TaskUser::Owner);
        assert_eq!(choose("auto", "nobody", 1000).unwrap(), TaskUser::Agent);
        assert_eq!(choose("owner", "nobody", 0).unwrap(), TaskUser::Owner);
        assert_eq!(
            choose("submitter", "none", 0).unwrap(),
            TaskUser::Submitter { fallback: None }
        );
        let e = choose("agent", "nobody", 0).unwrap_err().to_string();
        assert!(e.contains("as root"), "{e}");
        let e = choose("owner", "nobody", 1000).unwrap_err().to_string();
        assert!(e.contains("needs the agent to run as root"), "{e}");
        assert!(choose("bogus", "nobody", 0).is_err());
        assert!(shared_account_warning(1000).contains("uid 1000"));
    }

    #[test]
    fn owner_ids_are_checked() {
        let id = owner_identity("kim", Some(200_001), Some(200_001), &[300_000], 0).unwrap();
        assert_eq!(
            id,
            Identity {
                name: "kim".into(),
                uid: 200_001,
                gid: 200_001,
                groups: vec![200_001, 300_000],
            }
        );
        assert_eq!(
            owner_identity("kim", Some(5), None, &[], 0).unwrap().gid,
            5,
            "no gid: the uid's private group"
        );
        for (uid, gid, groups, why) in [
            (None, None, vec![], "no Unix uid"),
            (Some(0), Some(5), vec![], "uid 0"),
            (Some(1000), Some(5), vec![], "the agent's own"),
            (Some(5), Some(0), vec![], "group 0"),
            (Some(5), Some(5), vec![0], "group 0"),
        ] {
            let e = owner_identity("kim", uid, gid, &groups, 1000)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn reads_a_process_uid() {
        assert_eq!(process_uid(std::process::id() as i32), Some(euid()));
        assert_eq!(process_uid(-5), None);
    }
}
