//! Anchoring the audit chain outside the database: at an interval the server signs the chain's
//! head (sequence number and hash) with an ed25519 key kept in a file, not in the database, and
//! appends the signed checkpoint to a file (one JSON object a line) and to the log.
//!
//! The hash chain alone shows an entry rewritten in the middle, but not the newest entries
//! deleted: the shortened chain is still a valid chain. A checkpoint says "the chain had entry
//! `seq` with hash `hash`", signed by a key someone with only database access does not hold;
//! [`check`] then finds a truncated or rewritten tail (`haneul audit verify --checkpoint`).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One signed checkpoint: a line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number of the newest audit entry.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When it was signed (Unix milliseconds).
    pub at: i64,
    /// The signing key's public half, hex.
    pub public_key: String,
    /// The ed25519 signature of [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: a fixed prefix, so that the key's signature means nothing elsewhere.
    pub fn message(seq: i64, hash: &str, at: i64) -> String {
        format!("haneul-audit-checkpoint/v1 seq={seq} hash={hash} at={at}")
    }

    pub fn sign(key: &SigningKey, seq: i64, hash: &str, at: i64) -> Checkpoint {
        let sig = key.sign(Self::message(seq, hash, at).as_bytes());
        Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Whether the signature holds for the key the checkpoint names.
    pub fn verify(&self) -> Result<(), String> {
        let key: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("public_key is not 32 bytes of hex")?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("signature is not 64 bytes of hex")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("public_key: {e}"))?;
        key.verify(
            Self::message(self.seq, &self.hash, self.at).as_bytes(),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| {
            format!(
                "checkpoint at entry {}: the signature does not match",
                self.seq
            )
        })
    }
}

/// Where the key and the checkpoints live.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// The signing key (32 bytes of hex, mode 0600), created on first start.
    pub key_file: PathBuf,
    /// Checkpoints are appended here.
    pub checkpoint_file: PathBuf,
    /// How often the head is signed (only when it moved).
    pub interval: std::time::Duration,
}

impl AnchorConfig {
    /// Defaults in the data directory: `audit.key`, `audit-checkpoints.jsonl`, every minute.
    pub fn in_dir(data_dir: &Path) -> Self {
        AnchorConfig {
            key_file: data_dir.join("audit.key"),
            checkpoint_file: data_dir.join("audit-checkpoints.jsonl"),
            interval: std::time::Duration::from_secs(60),
        }
    }
}

/// The signing key in `path`, made (mode 0600) when there is none.
pub fn load_or_create_key(path: &Path) -> std::io::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{}: expected 64 hex digits (an ed25519 secret key)",
                        path.display()
                    ))
                })?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore;
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path)?;
            f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())?;
            f.sync_all()?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e),
    }
}

/// Appends `cp` to the checkpoint file and syncs it.
pub fn append(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::to_string(cp).map_err(std::io::Error::other)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

/// The checkpoints of a file, each signature checked, all by one key.
pub fn read(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Vec<Checkpoint> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let cp: Checkpoint = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        cp.verify()
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        if let Some(first) = out.first()
            && first.public_key != cp.public_key
        {
            return Err(format!(
                "{} line {}: signed by another key than line 1",
                path.display(),
                i + 1
            ));
        }
        out.push(cp);
    }
    if out.is_empty() {
        return Err(format!("{}: no checkpoints", path.display()));
    }
    Ok(out)
}

/// What the database has at a checkpoint's sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The entry, with its hash.
    Entry(String),
    /// No such entry; the log holds this many entries.
    Missing { entries: i64 },
}

/// Checks each checkpoint against what the database holds: a missing entry is a truncated tail,
/// another hash a rewritten one. Returns the newest checkpoint that holds.
pub fn check(
    checkpoints: &[Checkpoint],
    mut lookup: impl FnMut(i64) -> Result<Found, String>,
) -> Result<&Checkpoint, String> {
    for cp in checkpoints {
        match lookup(cp.seq)? {
            Found::Entry(hash) if hash == cp.hash => {}
            Found::Entry(hash) => {
                return Err(format!(
                    "audit entry {} was rewritten: its hash is {hash}, the checkpoint signed at {} says {}",
                    cp.seq, cp.at, cp.hash
                ));
            }
            Found::Missing { entries } => {
                return Err(format!(
                    "the audit log was truncated: entry {} of the checkpoint signed at {} is gone \
                     (the log holds {entries} entries)",
                    cp.seq, cp.at
                ));
            }
        }
    }
    checkpoints
        .last()
        .ok_or_else(|| "no checkpoints".to_string())
}

/// Signs the head whenever it moved, every `cfg.interval` of real time (the cadence of the
/// work), with the checkpoint dated by `clock`, until shutdown.
pub async fn run(
    store: std::sync::Arc<dyn haneul_store::Store>,
    clock: crate::clock::SharedClock,
    cfg: AnchorConfig,
    key: SigningKey,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<(i64, String)> = None;
    loop {
        match store.audit_head().await {
            Ok(Some(head)) if last.as_ref() != Some(&(head.seq, head.hash.clone())) => {
                let cp = Checkpoint::sign(&key, head.seq, &head.hash, clock.now_ms());
                match append(&cfg.checkpoint_file, &cp) {
                    Ok(()) => {
                        tracing::info!(
                            seq = cp.seq,
                            hash = %cp.hash,
                            signature = %cp.signature,
                            "audit checkpoint"
                        );
                        last = Some((head.seq, head.hash));
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        file = %cfg.checkpoint_file.display(),
                        "cannot write the audit checkpoint"
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the audit head"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_detect_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let cp = Checkpoint::sign(&key, 42, "abc", 1000);
        cp.verify().unwrap();
        let mut forged = cp.clone();
        forged.seq = 41;
        assert!(forged.verify().is_err());

        let cps = vec![Checkpoint::sign(&key, 3, "h3", 1), cp.clone()];
        let chain = |n: i64| -> Result<Found, String> {
            Ok(match n {
                3 => Found::Entry("h3".into()),
                42 => Found::Entry("abc".into()),
                _ => Found::Missing { entries: 42 },
            })
        };
        assert_eq!(check(&cps, chain).unwrap().seq, 42);
        let truncated = |n: i64| -> Result<Found, String> {
            Ok(if n <= 40 {
                Found::Entry(format!("h{n}"))
            } else {
                Found::Missing { entries: 40 }
            })
        };
        assert!(check(&cps, truncated).unwrap_err().contains("truncated"));
        let rewritten = |n: i64| -> Result<Found, String> { Ok(Found::Entry(format!("h{n}x"))) };
        assert!(check(&cps, rewritten).unwrap_err().contains("rewritten"));
    }
}
