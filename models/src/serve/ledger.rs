//! The inference ledger. Each answer is appended to a journal on disk (and synced) before
//! the client gets it; a background task posts the journal in batches — every `batch_size`
//! answers or every `interval` — as a manifest in the lake (`inferences/BATCH.json`), rows
//! in the `inferences` table and `InferencesRecorded` on chain, then drops them from the
//! journal. Answers are journaled while a batch is being posted: a chain that stops mining
//! delays their records, never the answers. A batch is sealed before it is posted: the
//! journal is rewritten, in one atomic rename, with the batch on its first line and the
//! answers after it below, so a crash leaves the journal before or after the seal, never
//! between. The batch id is the hash of its answers' ids, and each step of posting is
//! idempotent (the lake append by batch id, the chain call by `BatchAlreadyRecorded`), so a
//! crash at any point is repaired by the next start: nothing lost, nothing posted twice.

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
    Record(Box<InferenceEntry>, oneshot::Sender<Result<()>>),
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

/// Where versions before the seal line kept the batch being posted (read once, at start).
fn legacy_sealed_path(journal: &Path) -> PathBuf {
    journal.with_file_name("sealed.jsonl")
}

/// The journal's first line while a batch is sealed and not yet posted.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seal {
    sealed: Vec<InferenceEntry>,
}

/// What the journal holds: the sealed batch (empty when none) and the answers after it.
#[derive(Default)]
struct Journal {
    sealed: Vec<InferenceEntry>,
    pending: Vec<InferenceEntry>,
    /// A line did not parse (a crash mid-append leaves a partial last line): the file must
    /// be rewritten before anything is appended, or the next answer joins that line.
    torn: bool,
}

fn read_journal(path: &Path) -> Result<Journal> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
        Err(e) => return Err(Error::Io(path.display().to_string(), e)),
    };
    let mut journal = Journal {
        torn: !text.is_empty() && !text.ends_with('\n'),
        ..Journal::default()
    };
    for (i, line) in text.lines().enumerate() {
        if i == 0
            && let Ok(seal) = serde_json::from_str::<Seal>(line)
        {
            journal.sealed = seal.sealed;
        } else if let Ok(entry) = serde_json::from_str(line) {
            journal.pending.push(entry);
        } else {
            // A partial last line, left by a crash mid-append: never acknowledged.
            journal.torn = true;
        }
    }
    Ok(journal)
}

/// Rewrites the journal (to a temporary file, synced, renamed over it): the sealed batch on
/// the first line when there is one, then the answers after it.
fn write_journal(path: &Path, sealed: &[InferenceEntry], pending: &[InferenceEntry]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e| Error::Io(tmp.display().to_string(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    if !sealed.is_empty() {
        let seal = Seal {
            sealed: sealed.to_vec(),
        };
        serde_json::to_writer(&mut f, &seal).expect("a seal serialises");
        f.write_all(b"\n").map_err(io)?;
    }
    for e in pending {
        serde_json::to_writer(&mut f, e).expect("an entry serialises");
        f.write_all(b"\n").map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    let dir_io = |e| Error::Io(path.display().to_string(), e);
    std::fs::rename(&tmp, path).map_err(dir_io)?;
    // The rename itself made durable: a power cut must not bring back the journal before it.
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(dir_io)
}

/// Reads the journal at start, taking in a batch that a version before the seal line left
/// in `sealed.jsonl`: if the journal still lists that batch's answers first (that version
/// died between writing the two files), they are the batch's, not answers to post again.
fn open_journal(path: &Path) -> Result<Journal> {
    let mut journal = read_journal(path)?;
    let legacy = legacy_sealed_path(path);
    if !legacy.exists() {
        if journal.torn {
            write_journal(path, &journal.sealed, &journal.pending)?;
        }
        return Ok(journal);
    }
    let sealed = read_journal(&legacy)?.pending;
    if journal.sealed.is_empty() && !sealed.is_empty() {
        if journal.pending.starts_with(&sealed) {
            journal.pending.drain(..sealed.len());
        }
        journal.sealed = sealed;
    }
    write_journal(path, &journal.sealed, &journal.pending)?;
    std::fs::remove_file(&legacy).map_err(|e| Error::Io(legacy.display().to_string(), e))?;
    Ok(journal)
}

impl Ledger {
    /// Starts the ledger task; answers left in the journal by an earlier run are posted.
    pub fn start(chain: Arc<Chain>, lake: Lake, config: LedgerConfig, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let path = journal_path(dir);
        let journal = open_journal(&path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(chain, lake, config, path, journal, rx));
        Ok(Ledger { tx })
    }

    /// Journals an answer; returns once it is on disk.
    pub async fn record(&self, entry: InferenceEntry) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Record(Box::new(entry), tx))
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

/// Posting one sealed batch ([`inferences::record`]).
type Posting =
    std::pin::Pin<Box<dyn std::future::Future<Output = tributary_pipeline::Result<B256>> + Send>>;

async fn run(
    chain: Arc<Chain>,
    lake: Lake,
    config: LedgerConfig,
    path: PathBuf,
    journal: Journal,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let Journal {
        mut sealed,
        mut pending,
        ..
    } = journal;
    let mut file = reopen(&path, true);
    let start = tokio::time::Instant::now() + config.interval;
    let mut tick = tokio::time::interval_at(start, config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A round posts the answers journaled when it starts (or when a flush asks during it), a
    // batch at a time; answers are journaled meanwhile and wait for the next round (a chain
    // that stops mining delays their records, never them).
    let mut posting: Option<Posting> = None;
    // Answers the round still posts, the sealed batch in flight included.
    let mut owed = 0;
    // A round is asked for: at start (what an earlier run left), every tick, at batch size;
    // it starts when the one under way has ended.
    let mut asked = true;
    // After a failure, batch size no longer asks: the next tick (or a flush) retries.
    let mut backing_off = false;
    // Flushes waiting for the round to end, and the batches it posted.
    let mut flushes: Vec<oneshot::Sender<Result<Vec<B256>>>> = Vec::new();
    let mut posted: Vec<B256> = Vec::new();
    loop {
        if posting.is_none() {
            if owed == 0 {
                // The round (if any) has ended: its flushes are answered.
                finish(&mut flushes, &mut posted, None);
                if std::mem::take(&mut asked) {
                    owed = sealed.len() + pending.len();
                }
            }
            if owed > 0 {
                match seal_next(
                    &path,
                    &mut sealed,
                    &mut pending,
                    &mut file,
                    config.batch_size,
                ) {
                    Ok(()) => {
                        let (chain, lake, batch) = (chain.clone(), lake.clone(), sealed.clone());
                        posting = Some(Box::pin(async move {
                            inferences::record(&chain, &lake, &batch).await
                        }));
                    }
                    Err(e) => {
                        owed = 0;
                        backing_off = true;
                        finish(&mut flushes, &mut posted, Some(e));
                    }
                }
            }
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(Msg::Record(entry, reply)) => {
                    if file.is_none() {
                        file = reopen(&path, true);
                    }
                    let done = append(file.as_mut(), &path, &entry);
                    if done.is_ok() {
                        pending.push(*entry);
                    }
                    let _ = reply.send(done);
                    asked |= pending.len() >= config.batch_size && !backing_off;
                }
                Some(Msg::Flush(reply)) => {
                    // Everything journaled now, in this round (or one starting now).
                    flushes.push(reply);
                    backing_off = false;
                    owed = sealed.len() + pending.len();
                }
            },
            _ = tick.tick() => {
                backing_off = false;
                asked = true;
            }
            result = async { posting.as_mut().expect("guarded").await }, if posting.is_some() => {
                posting = None;
                match result {
                    Ok(id) => {
                        posted.push(id);
                        owed = owed.saturating_sub(sealed.len());
                        sealed.clear();
                        // The seal line goes; should this fail or the process die first, the
                        // next seal or start posts the same batch again, which is idempotent.
                        let unsealed = write_journal(&path, &[], &pending);
                        file = reopen(&path, false);
                        if let Err(e) = unsealed {
                            owed = 0;
                            backing_off = true;
                            finish(&mut flushes, &mut posted, Some(e));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, waiting = pending.len() + sealed.len(), "posting inferences failed; retrying at the next tick");
                        owed = 0;
                        asked = false;
                        backing_off = true;
                        finish(&mut flushes, &mut posted, Some(e.into()));
                    }
                }
            }
        }
    }
}

/// Seals the next batch when none is: up to `size` waiting answers, written as the
/// journal's first line (the caller has answers owed).
fn seal_next(
    path: &Path,
    sealed: &mut Vec<InferenceEntry>,
    pending: &mut Vec<InferenceEntry>,
    file: &mut Option<std::fs::File>,
    size: usize,
) -> Result<()> {
    if sealed.is_empty() {
        let n = pending.len().min(size);
        let written = write_journal(path, &pending[..n], &pending[n..]);
        // Reopened either way: the rename may have happened before a later step failed.
        *file = reopen(path, false);
        written?;
        *sealed = pending.drain(..n).collect();
    }
    Ok(())
}

/// The journal, opened to append to (after each rewrite: the rename replaced the file).
fn reopen(path: &Path, create: bool) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(create)
        .append(true)
        .open(path)
        .inspect_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "the ledger journal cannot be opened: answers are refused");
        })
        .ok()
}

/// Ends a round: answers the flushes waiting for it with the batches it posted, or with its
/// error (the first as it is, the others by its message).
fn finish(
    flushes: &mut Vec<oneshot::Sender<Result<Vec<B256>>>>,
    posted: &mut Vec<B256>,
    error: Option<Error>,
) {
    let ids = std::mem::take(posted);
    let Some(e) = error else {
        for reply in flushes.drain(..) {
            let _ = reply.send(Ok(ids.clone()));
        }
        return;
    };
    let message = e.to_string();
    let mut first = Some(e);
    for reply in flushes.drain(..) {
        let e = first
            .take()
            .unwrap_or_else(|| Error::Internal(message.clone()));
        let _ = reply.send(Err(e));
    }
}

fn append(file: Option<&mut std::fs::File>, path: &Path, e: &InferenceEntry) -> Result<()> {
    let io = |err| Error::Io(path.display().to_string(), err);
    let f = file
        .ok_or_else(|| Error::Internal(format!("{}: the journal is not open", path.display())))?;
    let mut line = serde_json::to_vec(e).expect("an entry serialises");
    line.push(b'\n');
    let end = f.metadata().map_err(io)?.len();
    if let Err(err) = f.write_all(&line).and_then(|()| f.sync_data()) {
        // A partial line must not stay: the next answer would join it, and a restart would
        // drop both.
        let _ = f.set_len(end);
        return Err(io(err));
    }
    Ok(())
}
