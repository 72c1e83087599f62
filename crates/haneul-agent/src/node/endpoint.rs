//! A task's web server, made known to the server: a task that serves HTTP (JupyterLab started
//! from the portal, docs/jupyter.md) writes `PORT TOKEN` to `HANEUL_ENDPOINT_FILE` in its
//! working directory, and the agent passes that on with the attempt's fence. The server then
//! forwards its owner's portal requests to the node's address and that port, with the token.
//!
//! The file is the task's, so it is read as hostile: not through a symbolic link (a task could
//! point one at a file only the agent may read), only a regular file, at most [`MAX_BYTES`],
//! and only a port and a token of plain characters. It is sent again every [`RESEND`] while the
//! task runs, so that a server that restarted, or a new leader, learns it without the agent
//! keeping any state about it.

use super::NodeCtx;
use haneul_api::{Assignment, TaskEndpoint};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest endpoint file read.
const MAX_BYTES: u64 = 512;
/// How often a published endpoint is sent again.
const RESEND: Duration = Duration::from_secs(30);

/// The port and token in a task's endpoint file, or why it is refused.
pub(crate) fn read(path: &Path) -> Result<Option<(u16, String)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open the endpoint file: {e}")),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("the endpoint file is not a regular file".into());
    }
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("the endpoint file is not text: {e}"))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("the endpoint file is over {MAX_BYTES} bytes"));
    }
    // Written by `printf ... > file`: a reader may meet it half-written, without its newline.
    let Some(line) = text.strip_suffix('\n') else {
        return Ok(None);
    };
    parse(line).map(Some)
}

/// `PORT TOKEN`: a port of 1024 to 65535 and a token of 16 to 128 characters `A-Za-z0-9-_`.
pub(crate) fn parse(line: &str) -> Result<(u16, String), String> {
    let mut words = line.split(' ');
    let (Some(port), Some(token), None) = (words.next(), words.next(), words.next()) else {
        return Err("the endpoint file must hold `PORT TOKEN` on one line".into());
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p >= 1024)
        .ok_or_else(|| format!("`{port}` is not a port of 1024 to 65535"))?;
    if !token_ok(token) {
        return Err("the token must be 16 to 128 characters of A-Z a-z 0-9 - _".into());
    }
    Ok((port, token.to_string()))
}

/// What the server accepts as a task's token (the same rule as its check).
pub(crate) fn token_ok(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Watches one task's endpoint file and sends what it holds.
pub(super) struct Publisher {
    path: PathBuf,
    /// What was sent last, and when.
    sent: Option<((u16, String), Instant)>,
    /// A refused file is logged once, not every second.
    complained: bool,
}

impl Publisher {
    pub(super) fn new(workdir: &Path) -> Self {
        Publisher {
            path: workdir.join(crate::launch::ENDPOINT_FILE),
            sent: None,
            complained: false,
        }
    }

    /// Reads the file and sends it when it is new, changed, or due to be sent again.
    pub(super) fn poll(&mut self, ctx: &NodeCtx, a: &Assignment) {
        let found = match read(&self.path) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(why) => {
                if !self.complained {
                    tracing::warn!(job = a.job, task = a.task, "endpoint not published: {why}");
                    self.complained = true;
                }
                return;
            }
        };
        if let Some((last, at)) = &self.sent
            && *last == found
            && at.elapsed() < RESEND
        {
            return;
        }
        let body = TaskEndpoint {
            job: a.job,
            fence: a.fence,
            task: a.task,
            port: found.0,
            token: found.1.clone(),
        };
        // One try: the next poll is the retry, and a stale fence is not worth more.
        match ctx.transport.endpoint(ctx.node, &body) {
            Ok(()) => self.sent = Some((found, Instant::now())),
            Err(e) => tracing::debug!(job = a.job, "endpoint not sent: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_port_and_token_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".haneul-endpoint");
        assert_eq!(read(&path), Ok(None), "no file yet");
        std::fs::write(&path, "8888 abcdefABCDEF0123_-xy").unwrap();
        assert_eq!(read(&path), Ok(None), "half-written: no newline yet");
        std::fs::write(&path, "8888 abcdefABCDEF0123_-xy\n").unwrap();
        assert_eq!(
            read(&path),
            Ok(Some((8888, "abcdefABCDEF0123_-xy".to_string())))
        );
        for bad in [
            "80 abcdefABCDEF0123_-xy",
            "70000 abcdefABCDEF0123_-xy",
            "8888 short",
            "8888 has;semicolon0123456",
            "8888",
            "8888 abcdefABCDEF0123_-xy extra",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        std::fs::write(&path, format!("{}\n", "1".repeat(600))).unwrap();
        assert!(read(&path).unwrap_err().contains("over 512 bytes"));
    }

    #[test]
    fn a_symbolic_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "8888 abcdefABCDEF0123_-xy\n").unwrap();
        let path = dir.path().join(".haneul-endpoint");
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        assert!(read(&path).is_err(), "read through a link");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(read(&path).is_err(), "a directory read as the file");
    }
}
