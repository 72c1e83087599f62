//! An interactive task's terminal on the node (docs/interactive.md): the pseudo-terminal the
//! task runs on ([`open_pty`]) and the thread that relays it to the server over a websocket
//! the agent opens ([`Relay`]): output read from the pty goes out as data frames, data frames
//! that come in are written to it (Ctrl-C is the byte 0x03, which the pty's line discipline
//! turns into SIGINT for the foreground process), resize frames set its window size (the
//! kernel then sends SIGWINCH), and once the task has exited and its last output is sent, an
//! exit frame carries its status.
//!
//! The connection is opened again (with backoff) when it breaks; while it is down the pty is
//! not read, so the task waits on a full terminal rather than losing output.

use super::{Stop, Transport};
use haneul_api::terminal::{Frame, MAX_DATA};
use rustix::event::{PollFd, PollFlags};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

/// What comes from the server over a terminal's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Frame(Frame),
    /// The connection ended; open a new one.
    Closed,
}

/// One open terminal connection to the server ([`Transport::terminal`]).
pub trait TerminalLink: Send {
    /// Sends a frame; false once the connection has ended.
    fn send(&mut self, frame: &Frame) -> bool;
    /// The next frame from the server, waiting at most `wait`; `None` when none came.
    fn recv(&mut self, wait: Duration) -> Option<LinkEvent>;
}

/// A new pseudo-terminal: (the agent's side, the task's side), both close-on-exec.
pub fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let main = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&main)?;
    unlockpt(&main)?;
    let name = ptsname(&main, Vec::new())?;
    let task = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The agent's side never blocks its relay: reads and writes return at once.
    let flags = rustix::fs::fcntl_getfl(&main)?;
    rustix::fs::fcntl_setfl(&main, flags | OFlags::NONBLOCK)?;
    Ok((main, task))
}

/// Where a relay connects, and how.
pub(super) struct Target {
    pub transport: Arc<dyn Transport>,
    pub node: i64,
    pub job: i64,
    pub fence: i64,
    pub task: i64,
    pub stop: Stop,
    pub backoff: (Duration, Duration),
}

/// The relay thread of one interactive task.
pub(super) struct Relay {
    exit: Sender<i32>,
    handle: std::thread::JoinHandle<()>,
}

/// How long after the task's exit its last output may take to drain from the pty.
const DRAIN: Duration = Duration::from_millis(300);
/// How long the exit status may wait for a connection to carry it.
const EXIT_DELIVERY: Duration = Duration::from_secs(5);
/// How long a write of typed bytes may wait for a task that reads nothing.
const WRITE_PATIENCE: Duration = Duration::from_secs(1);

impl Relay {
    /// Starts relaying the pty whose agent side is `main`.
    pub(super) fn start(target: Target, main: OwnedFd) -> Relay {
        let (exit, exit_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || run(target, main, exit_rx));
        Relay { exit, handle }
    }

    /// The task exited with `code`: its last output and the exit frame are sent (within a few
    /// seconds), then the relay ends.
    pub(super) fn finish(self, code: i64) {
        let _ = self.exit.send(i32::try_from(code).unwrap_or(255));
        let _ = self.handle.join();
    }
}

fn connect(t: &Target) -> Option<Box<dyn TerminalLink>> {
    match t.transport.terminal(t.node, t.job, t.fence, t.task) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(job = t.job, "terminal connection: {e}");
            None
        }
    }
}

fn run(t: Target, main: OwnedFd, exit_rx: Receiver<i32>) {
    let mut backoff = haneul_client::Backoff::new(t.backoff.0, t.backoff.1);
    let mut link: Option<Box<dyn TerminalLink>> = None;
    let mut exit: Option<(i32, Instant)> = None;
    let mut eof = false;
    let mut buf = vec![0u8; MAX_DATA];
    loop {
        if exit.is_none() {
            match exit_rx.try_recv() {
                Ok(code) => exit = Some((code, Instant::now())),
                // The supervisor went without an exit (the agent is stopping).
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {}
            }
        }
        let Some(l) = link.as_mut() else {
            if let Some((_, at)) = exit
                && at.elapsed() > EXIT_DELIVERY
            {
                tracing::warn!(job = t.job, "the exit status found no connection to go by");
                return;
            }
            if (t.stop)() && exit.is_none() {
                return;
            }
            link = connect(&t);
            if link.is_some() {
                backoff.reset();
            } else {
                // Waits on the exit channel, so that an exit is seen at once.
                match exit_rx.recv_timeout(backoff.next_wait()) {
                    Ok(code) if exit.is_none() => exit = Some((code, Instant::now())),
                    Err(RecvTimeoutError::Disconnected) if exit.is_none() => return,
                    _ => {}
                }
            }
            continue;
        };
        // Output: what the pty has, as data frames.
        let mut sent_any = false;
        if !eof && readable(&main, Duration::from_millis(20)) {
            match rustix::io::read(&main, &mut buf[..]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    sent_any = true;
                    if !l.send(&Frame::Data(buf[..n].to_vec())) {
                        link = None;
                        continue;
                    }
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                // EIO: every process holding the task's side has closed it.
                Err(_) => eof = true,
            }
        } else if eof {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Input: keys and resizes from the user.
        loop {
            match l.recv(Duration::ZERO) {
                None => break,
                Some(LinkEvent::Closed) => {
                    link = None;
                    break;
                }
                Some(LinkEvent::Frame(Frame::Data(d))) => write_all(&main, &d),
                Some(LinkEvent::Frame(Frame::Resize { rows, cols })) => {
                    let size = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    if let Err(e) = rustix::termios::tcsetwinsize(&main, size) {
                        tracing::debug!(job = t.job, "cannot resize the terminal: {e}");
                    }
                }
                Some(LinkEvent::Frame(other)) => {
                    tracing::debug!(job = t.job, ?other, "unexpected terminal frame")
                }
            }
        }
        // The end: once the task has exited and its output has drained (or stopped coming).
        if let (Some((code, at)), Some(l)) = (exit, link.as_mut())
            && (eof || at.elapsed() >= EXIT_DELIVERY || (!sent_any && at.elapsed() >= DRAIN))
        {
            l.send(&Frame::Exit(code));
            return;
        }
    }
}

/// Whether `fd` has something to read (or has hung up) within `wait`.
fn readable(fd: &OwnedFd, wait: Duration) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = rustix::event::Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Writes typed bytes to the pty, waiting (a little) while the task's input is full; what
/// still does not fit is dropped, as a terminal whose program reads nothing would.
fn write_all(fd: &OwnedFd, mut bytes: &[u8]) {
    let until = Instant::now() + WRITE_PATIENCE;
    while !bytes.is_empty() && Instant::now() < until {
        match rustix::io::write(fd.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pty_carries_bytes_and_its_size() {
        let (main, task) = open_pty().unwrap();
        rustix::termios::tcsetwinsize(
            &main,
            rustix::termios::Winsize {
                ws_row: 33,
                ws_col: 101,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        let size = rustix::termios::tcgetwinsize(&task).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
        rustix::io::write(&task, b"out").unwrap();
        assert!(readable(&main, Duration::from_secs(1)));
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&main, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"out");
        // Nothing more: the agent's side does not block.
        assert!(!readable(&main, Duration::from_millis(10)));
        assert_eq!(
            rustix::io::read(&main, &mut buf),
            Err(rustix::io::Errno::AGAIN)
        );
    }
}
