//! The frames of an interactive job's terminal (docs/interactive.md): what the CLI, the server
//! and the agent send one another over the terminal's websockets. Each binary websocket message
//! is one frame: a kind byte, then its payload.
//!
//! | kind | name   | payload                               | sent by              |
//! |------|--------|---------------------------------------|----------------------|
//! | 0    | data   | 1 to [`MAX_DATA`] bytes of the stream | all (keys, output)   |
//! | 1    | resize | rows, cols: two big-endian u16, 1-4096 | CLI -> agent         |
//! | 2    | exit   | the shell's exit status, big-endian i32 | agent -> CLI       |
//! | 3    | notice | UTF-8 text of at most 1024 bytes       | server -> CLI        |
//!
//! Anything else (another kind, a payload of the wrong length or size) is refused: the relay
//! passes on only frames it has decoded.

/// Most bytes of stream in one data frame.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest encoded frame: a full data frame and its kind byte.
pub const MAX_FRAME: usize = MAX_DATA + 1;
/// Largest terminal accepted in either dimension.
pub const MAX_SIDE: u16 = 4096;
/// Longest notice, in bytes.
pub const MAX_NOTICE: usize = 1024;

/// One message of the terminal protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes typed (towards the task) or printed (towards the user).
    Data(Vec<u8>),
    /// The user's window is now this size.
    Resize { rows: u16, cols: u16 },
    /// The task's program ended with this status (128 + N for signal N).
    Exit(i32),
    /// Something the server tells the user (attached elsewhere, job ended).
    Notice(String),
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Empty,
    UnknownKind(u8),
    /// The payload's length is wrong for its kind.
    Length {
        kind: &'static str,
        len: usize,
    },
    /// A resize to 0 or past [`MAX_SIDE`].
    Size {
        rows: u16,
        cols: u16,
    },
    NotText,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Empty => write!(f, "empty terminal frame"),
            FrameError::UnknownKind(k) => write!(f, "unknown terminal frame kind {k}"),
            FrameError::Length { kind, len } => {
                write!(f, "{kind} frame with a payload of {len} bytes")
            }
            FrameError::Size { rows, cols } => write!(
                f,
                "terminal size {rows}x{cols}: rows and columns must be 1 to {MAX_SIDE}"
            ),
            FrameError::NotText => write!(f, "notice frame that is not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    /// The frame as one websocket message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Data(d) => {
                let mut out = Vec::with_capacity(d.len() + 1);
                out.push(0);
                out.extend_from_slice(d);
                out
            }
            Frame::Resize { rows, cols } => {
                let mut out = vec![1];
                out.extend_from_slice(&rows.to_be_bytes());
                out.extend_from_slice(&cols.to_be_bytes());
                out
            }
            Frame::Exit(code) => {
                let mut out = vec![2];
                out.extend_from_slice(&code.to_be_bytes());
                out
            }
            Frame::Notice(text) => {
                let mut out = vec![3];
                out.extend_from_slice(text.as_bytes());
                out
            }
        }
    }

    /// Reads one websocket message; every bound of the table above is checked.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, payload) = bytes.split_first().ok_or(FrameError::Empty)?;
        let len = payload.len();
        match kind {
            0 if (1..=MAX_DATA).contains(&len) => Ok(Frame::Data(payload.to_vec())),
            0 => Err(FrameError::Length { kind: "data", len }),
            1 if len == 4 => {
                let rows = u16::from_be_bytes([payload[0], payload[1]]);
                let cols = u16::from_be_bytes([payload[2], payload[3]]);
                if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
                    return Err(FrameError::Size { rows, cols });
                }
                Ok(Frame::Resize { rows, cols })
            }
            1 => Err(FrameError::Length {
                kind: "resize",
                len,
            }),
            2 if len == 4 => Ok(Frame::Exit(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ]))),
            2 => Err(FrameError::Length { kind: "exit", len }),
            3 if len <= MAX_NOTICE => std::str::from_utf8(payload)
                .map(|s| Frame::Notice(s.to_string()))
                .map_err(|_| FrameError::NotText),
            3 => Err(FrameError::Length {
                kind: "notice",
                len,
            }),
            k => Err(FrameError::UnknownKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Data(b"echo hi\r".to_vec()),
            Frame::Data(vec![3]),
            Frame::Data(vec![0xff; MAX_DATA]),
            Frame::Resize {
                rows: 40,
                cols: 132,
            },
            Frame::Exit(7),
            Frame::Exit(130),
            Frame::Notice("attached elsewhere".into()),
        ] {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(Frame::Resize { rows: 1, cols: 2 }.encode(), [1, 0, 1, 0, 2]);
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[9, 1]), Err(FrameError::UnknownKind(9)));
        assert_eq!(
            Frame::decode(&[0]),
            Err(FrameError::Length {
                kind: "data",
                len: 0
            })
        );
        let mut big = vec![0u8; MAX_FRAME + 1];
        big[0] = 0;
        assert!(matches!(
            Frame::decode(&big),
            Err(FrameError::Length { kind: "data", .. })
        ));
        assert!(matches!(
            Frame::decode(&[1, 0, 0, 0, 80]),
            Err(FrameError::Size { rows: 0, cols: 80 })
        ));
        assert!(matches!(
            Frame::decode(&[1, 0x10, 1, 0, 80]),
            Err(FrameError::Size { .. })
        ));
        assert!(matches!(
            Frame::decode(&[1, 0, 24]),
            Err(FrameError::Length { kind: "resize", .. })
        ));
        assert!(matches!(
            Frame::decode(&[2, 0, 0, 7]),
            Err(FrameError::Length { kind: "exit", .. })
        ));
        assert_eq!(Frame::decode(&[3, 0xff]), Err(FrameError::NotText));
        let e = Frame::decode(&[1, 0, 0, 0, 80]).unwrap_err().to_string();
        assert!(e.contains("1 to 4096"), "{e}");
    }
}
