//! A task's output to the server: streamed while it runs (new bytes only, bounded per tick and
//! per task), its tail at its end, and the agent's own notes. Every upload goes through
//! [`send_log`], the one place that makes the wire form of a piece of output.

use super::NodeCtx;
use crate::AgentError;
use crate::launch;
use crate::logs::Follower;
use haneul_api::{Assignment, LogUpload, OutputStream};

/// Largest log upload the server takes is 256 KiB; stay well below.
const LOG_CHUNK: usize = 128 * 1024;
/// At a task's end, how much of what was not streamed yet is uploaded, per file.
const LOG_TAIL: u64 = 1024 * 1024;
/// Most bytes streamed per file per tick, so a chatty task cannot monopolise its thread.
const STREAM_TICK_MAX: usize = 1024 * 1024;
/// Most bytes streamed per task while it runs; past this only the tail is uploaded at its end
/// (the files stay whole in the task's directory on the node).
const STREAM_MAX_TOTAL: u64 = 64 * 1024 * 1024;

/// Streams a task's stdout and stderr to the server: new bytes only, bounded per tick and per
/// task. Text whose upload failed is kept and sent again on the next tick. Each upload of a
/// file's bytes says where in the file they start, so the server stores them once even when a
/// restarted agent sends again what it had uploaded but not yet recorded.
pub(super) struct LogStream {
    files: [OutputFile; 2],
    streamed: u64,
    refused: bool,
}

/// One of a task's output files and what of it is waiting to be uploaded.
struct OutputFile {
    stream: OutputStream,
    follower: Follower,
    /// The file's bytes whose upload failed, and where in the file they start.
    unsent: Option<(Vec<u8>, u64)>,
    /// The agent's own lines, sent before the file's next bytes.
    notes: Option<Vec<u8>>,
}

impl LogStream {
    /// Starts at these offsets into the files (0 for a new task).
    pub(super) fn new(task: &launch::RunningTask, stdout_offset: u64, stderr_offset: u64) -> Self {
        LogStream::at(task.workdir(), stdout_offset, stderr_offset)
    }

    pub(super) fn at(dir: &std::path::Path, stdout_offset: u64, stderr_offset: u64) -> Self {
        let file = |stream, name, offset| OutputFile {
            stream,
            follower: Follower::at(dir.join(name), offset),
            unsent: None,
            notes: None,
        };
        LogStream {
            files: [
                file(OutputStream::Stdout, launch::STDOUT_FILE, stdout_offset),
                file(OutputStream::Stderr, launch::STDERR_FILE, stderr_offset),
            ],
            streamed: 0,
            refused: false,
        }
    }

    /// How far into stdout and stderr the upload has got: where the first byte not yet
    /// uploaded is. A restart from here may send again what was uploaded after this was
    /// recorded (the server stores it once) and never skips anything.
    pub(super) fn offsets(&self) -> (u64, u64) {
        let off = |f: &OutputFile| f.unsent.as_ref().map_or(f.follower.handed_to(), |u| u.1);
        (off(&self.files[0]), off(&self.files[1]))
    }

    /// Adds a line of the agent's own after stderr's output uploaded so far.
    pub(super) fn note(&mut self, text: &str) {
        self.files[1]
            .notes
            .get_or_insert_default()
            .extend_from_slice(text.as_bytes());
    }

    /// Uploads what is new. At the task's end (`at_end`) everything left is sent, retrying,
    /// after skipping all but the last [`LOG_TAIL`] bytes of each file.
    pub(super) fn pump(&mut self, ctx: &NodeCtx, a: &Assignment, at_end: bool) {
        for file in &mut self.files {
            if self.refused {
                return;
            }
            if !at_end && self.streamed >= STREAM_MAX_TOTAL {
                return;
            }
            let name = file.stream.as_str();
            if at_end {
                let skipped = file.follower.skip_to_tail(LOG_TAIL);
                if skipped > 0 {
                    let note = format!(
                        "[haneul agent: {skipped} bytes of {name} not uploaded; the whole file \
                         is {} on node {}]\n",
                        follower_path(ctx, a, name),
                        ctx.name
                    );
                    file.notes
                        .get_or_insert_default()
                        .extend_from_slice(note.as_bytes());
                }
            }
            let mut this_tick = 0;
            loop {
                // What failed before goes first, then the agent's notes, then new bytes.
                let (text, at) = if let Some((t, offset)) = file.unsent.take() {
                    (t, Some(offset))
                } else if let Some(t) = file.notes.take() {
                    (t, None)
                } else {
                    let offset = file.follower.handed_to();
                    match file.follower.read_new(LOG_CHUNK, at_end) {
                        Ok(t) if t.is_empty() => break,
                        Ok(t) => (t, Some(offset)),
                        Err(e) => {
                            tracing::warn!(job = a.job, task = a.task, "reading {name}: {e}");
                            break;
                        }
                    }
                };
                let len = text.len();
                match send_log(ctx, a, &text, at.map(|o| (file.stream, o)), at_end) {
                    Ok(()) => {
                        self.streamed += len as u64;
                        this_tick += len;
                    }
                    Err(AgentError::Transient(m)) => {
                        if at_end {
                            tracing::warn!(job = a.job, task = a.task, "log upload dropped: {m}");
                            return;
                        }
                        // Kept for the next tick.
                        match at {
                            Some(offset) => file.unsent = Some((text, offset)),
                            None => file.notes = Some(text),
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(job = a.job, task = a.task, "log upload: {e}");
                        self.refused = true;
                        return;
                    }
                }
                if !at_end && this_tick >= STREAM_TICK_MAX {
                    break;
                }
            }
        }
    }
}

fn follower_path(ctx: &NodeCtx, a: &Assignment, name: &str) -> String {
    ctx.task_dir(a)
        .join(format!("{name}.log"))
        .display()
        .to_string()
}

/// One log upload of at most [`LOG_CHUNK`] bytes; with `retry`, transient failures are retried.
/// The one place that turns a piece of output into the wire's [`LogUpload`].
/// `at` marks bytes of an output file with where in it they start; the agent's own notes
/// go unmarked.
fn send_log(
    ctx: &NodeCtx,
    a: &Assignment,
    bytes: &[u8],
    at: Option<(OutputStream, u64)>,
    retry: bool,
) -> Result<(), AgentError> {
    // Output is bytes, not necessarily text: what is not UTF-8 goes as base64, kept exactly.
    let mut body = LogUpload::new(a.job, a.fence, a.task, bytes);
    if let Some((stream, offset)) = at {
        body = body.at(stream, offset);
    }
    if retry {
        ctx.retrying("log upload", || ctx.transport.upload_log(ctx.node, &body))
    } else {
        ctx.transport.upload_log(ctx.node, &body)
    }
}

/// Uploads `data` (a note of the agent's own) in chunks; stops at a refusal.
pub(super) fn upload(ctx: &NodeCtx, a: &Assignment, data: &str) {
    let mut rest = data;
    while !rest.is_empty() {
        let mut cut = rest.len().min(LOG_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        if let Err(e) = send_log(ctx, a, chunk.as_bytes(), None, true) {
            tracing::warn!(job = a.job, task = a.task, "log upload dropped: {e}");
            return;
        }
    }
}
