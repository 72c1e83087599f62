//! Reading a task's log files incrementally, for streaming them to the server while it runs.
//!
//! A [`Follower`] remembers how far into one file it has read and hands out only new bytes, at
//! most a given amount at a time. The bytes are handed out exactly as the task wrote them (a job
//! may print NUL or bytes that are not UTF-8); a UTF-8 character split across two reads is held
//! back until it is whole, so that text uploads as text.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Follows one growing file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
    // Bytes of a character cut by the last read, sent with the next one.
    partial: Vec<u8>,
    skipped: u64,
}

impl Follower {
    /// Starts at the beginning of `path` (which need not exist yet).
    pub fn new(path: PathBuf) -> Self {
        Follower {
            path,
            offset: 0,
            partial: Vec::new(),
            skipped: 0,
        }
    }

    /// Resumes at `offset` bytes into the file (after an agent restart).
    pub fn at(path: PathBuf, offset: u64) -> Self {
        Follower {
            offset,
            ..Follower::new(path)
        }
    }

    /// Bytes of the file consumed so far (handed out, skipped, or held as a partial character).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where in the file the next byte handed out starts: the offset less a partial character
    /// held back.
    pub fn handed_to(&self) -> u64 {
        self.offset - self.partial.len() as u64
    }

    /// Bytes skipped by [`Follower::skip_to_tail`] so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Bytes written to the file that have not been handed out yet.
    pub fn pending(&self) -> u64 {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        len.saturating_sub(self.offset) + self.partial.len() as u64
    }

    /// Skips ahead so that at most `keep` unread bytes remain; returns how many were skipped.
    /// For the end of a task that printed more than can be uploaded.
    pub fn skip_to_tail(&mut self, keep: u64) -> u64 {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let unread = len.saturating_sub(self.offset);
        if unread <= keep {
            return 0;
        }
        let n = unread - keep;
        self.offset += n;
        self.partial.clear();
        self.skipped += n;
        n
    }

    /// New bytes since the last call, at most about `max` (never less than one whole
    /// character). With `at_end` (the writer is gone), an incomplete last character is given out
    /// as it is instead of being held back. A missing file reads as empty.
    pub fn read_new(&mut self, max: usize, at_end: bool) -> std::io::Result<Vec<u8>> {
        let mut buf = std::mem::take(&mut self.partial);
        match open_regular(&self.path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(self.offset))?;
                let want = max.saturating_sub(buf.len()).max(1);
                let start = buf.len();
                buf.resize(start + want, 0);
                let mut got = 0;
                while got < want {
                    let n = f.read(&mut buf[start + got..])?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                buf.truncate(start + got);
                self.offset += got as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let keep = match buf.utf8_chunks().last() {
            // An incomplete sequence at the very end: hold it back for the next read.
            Some(c) if !at_end && !c.invalid().is_empty() && is_cut_char(c.invalid()) => {
                buf.len() - c.invalid().len()
            }
            _ => buf.len(),
        };
        self.partial = buf.split_off(keep);
        Ok(buf)
    }
}

/// Whether `tail`, the bytes after a buffer's last whole character, is the start of a
/// character that the next read may complete (rather than bytes that are not UTF-8 at all).
fn is_cut_char(tail: &[u8]) -> bool {
    let need = match tail[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return false,
    };
    tail.len() < need && tail[1..].iter().all(|b| b & 0xc0 == 0x80)
}

/// Opens `path` for reading only if it is a regular file and not a symbolic link. The agent
/// (root) reads files in directories their tasks own: a task could put a link to a secret, or
/// a FIFO that blocks the reader, where its output was.
pub fn open_regular(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hands_out_only_new_whole_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut f = Follower::new(path.clone());
        assert_eq!(f.read_new(100, false).unwrap(), b"");
        let mut w = File::create(&path).unwrap();
        w.write_all("one 한".as_bytes()).unwrap();
        // "한" is three bytes; a read of 5 bytes cuts it.
        assert_eq!(f.read_new(5, false).unwrap(), b"one ");
        assert_eq!(f.read_new(100, false).unwrap(), "한".as_bytes());
        w.write_all(b"\ntwo\n").unwrap();
        assert_eq!(f.read_new(100, false).unwrap(), b"\ntwo\n");
        assert_eq!(f.read_new(100, false).unwrap(), b"");
        // A writer that died mid-character: the rest comes out as written, not lost.
        w.write_all(&"국".as_bytes()[..2]).unwrap();
        assert_eq!(f.read_new(100, false).unwrap(), b"");
        assert_eq!(f.read_new(100, true).unwrap(), &"국".as_bytes()[..2]);
        assert_eq!(f.offset(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn bytes_that_are_not_text_come_out_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"x\0y\xff\xfe").unwrap();
        let mut f = Follower::new(path);
        // 0xfe cannot start a character: it is not held back waiting for more.
        assert_eq!(f.read_new(100, false).unwrap(), b"x\0y\xff\xfe");
    }

    #[test]
    fn skips_to_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "0123456789").unwrap();
        let mut f = Follower::new(path);
        assert_eq!(f.read_new(2, false).unwrap(), b"01");
        assert_eq!(f.pending(), 8);
        assert_eq!(f.skip_to_tail(3), 5);
        assert_eq!(f.read_new(100, true).unwrap(), b"789");
        assert_eq!(f.skipped(), 5);
    }
}
