//! The inference ledger. Each answer is appended to a journal on disk (and synced) before
//! the client gets it; a background task posts the journal in batches — every `batch_size`
//! answers or every `interval` — as a manifest in the lake (`inferences/BATCH.json`), rows
//! in the `inferences` table and `InferencesRecorded` on chain, then drops them from the
//! journal. The batch id is the hash of its answers' ids, and each step is idempotent (the
//! lake append by batch id, the chain call by `BatchAlreadyRecorded`), so a crash at any
//! point is repaired by the next start: nothing lost, nothing posted twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use tokio::sync::{mpsc, oneshot};
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_pipeline::inferences;
use tributary_schemas::manifest::InferenceEntry;

use crate::{Error, Result};

/// When batches are posted.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Post when this many answers wait.
    pub batch_size: usize,
    /// Post what waits at least this often.
    pub interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batch_size: 100,
            interval: Duration::from_secs(10),
        }
    }
}

enum Msg {
    Record(InferenceEntry, oneshot::Sender<Result<()>>),
    Flush(oneshot::Sender<Result<Vec<B256>>>),
}

/// A handle on the ledger task.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Msg>,
}

/// The journal file of answers not yet posted.
pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("pending.jsonl")
}

/// The batch being posted.
fn sealed_path(journal: &Path) -> PathBuf {
    journal.with_file_name("sealed.jsonl")
}

fn read_journal(path: &Path) -> Result<Vec<InferenceEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::Io(path.display().to_string(), e)),
    };
    // A crash mid-append leaves at most one partial last line: it was never acknowledged.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn write_journal(path: &Path, entries: &[InferenceEntry]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e| Error::Io(tmp.display().to_string(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    for e in entries {
        serde_json::to_writer(&mut f, e).expect("an entry serialises");
        f.write_all(b"\n").map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io(path.display().to_string(), e))
}

impl Ledger {
    /// Starts the ledger task; answers left in the journal by an earlier run are posted.
    pub fn start(chain: Arc<Chain>, lake: Lake, config: LedgerConfig, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let path = journal_path(dir);
        let pending = read_journal(&path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(chain, lake, config, path, pending, rx));
        Ok(Ledger { tx })
    }

    /// Journals an answer; returns once it is on disk.
    pub async fn record(&self, entry: InferenceEntry) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Record(entry, tx))
            .map_err(|_| Error::Internal("the ledger has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the ledger has stopped".into()))?
    }

    /// Posts everything journaled now; returns the batch ids posted.
    pub async fn flush(&self) -> Result<Vec<B256>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| Error::Internal("the ledger has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the ledger has stopped".into()))?
    }
}

async fn run(
    chain: Arc<Chain>,
    lake: Lake,
    config: LedgerConfig,
    path: PathBuf,
    mut pending: Vec<InferenceEntry>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the ledger journal cannot be opened");
            None
        }
    };
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_reply = tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(Msg::Record(entry, reply)) => {
                    let done = append(file.as_mut(), &path, &entry);
                    if done.is_ok() {
                        pending.push(entry);
                    }
                    let _ = reply.send(done);
                    if pending.len() < config.batch_size {
                        continue;
                    }
                    None
                }
                Some(Msg::Flush(reply)) => Some(reply),
            },
            _ = tick.tick() => None,
        };
        let mut posted = Vec::new();
        let mut failed = None;
        loop {
            // A batch is sealed (its answers moved from the journal to `sealed.jsonl`)
            // before it is posted, so a retry after a crash posts the same batch.
            let mut sealed = match read_journal(&sealed_path(&path)) {
                Ok(s) => s,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if sealed.is_empty() {
                if pending.is_empty() {
                    break;
                }
                let n = pending.len().min(config.batch_size);
                sealed = pending[..n].to_vec();
                let sealing = write_journal(&sealed_path(&path), &sealed)
                    .and_then(|()| write_journal(&path, &pending[n..]));
                if let Err(e) = sealing {
                    failed = Some(e);
                    break;
                }
                pending.drain(..n);
                file = std::fs::OpenOptions::new().append(true).open(&path).ok();
            }
            match inferences::record(&chain, &lake, &sealed).await {
                Ok(id) => {
                    posted.push(id);
                    let _ = std::fs::remove_file(sealed_path(&path));
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = pending.len() + sealed.len(), "posting inferences failed; retrying later");
                    failed = Some(e.into());
                    break;
                }
            }
        }
        if let Some(reply) = flush_reply {
            let _ = reply.send(match failed {
                None => Ok(posted),
                Some(e) => Err(e),
            });
        }
    }
}

fn append(file: Option<&mut std::fs::File>, path: &Path, e: &InferenceEntry) -> Result<()> {
    let io = |err| Error::Io(path.display().to_string(), err);
    let f = file
        .ok_or_else(|| Error::Internal(format!("{}: the journal is not open", path.display())))?;
    let mut line = serde_json::to_vec(e).expect("an entry serialises");
    line.push(b'\n');
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)
}
