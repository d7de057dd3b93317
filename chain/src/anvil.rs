//! A local anvil node as a child process: the embedded default chain.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use url::Url;

use crate::{Error, Result};

/// Where the anvil binary is: `TRIBUTARY_ANVIL` at run time, else the one `scripts/setup.sh`
/// installed when this binary was built, else `anvil` on `PATH`.
pub fn anvil_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIBUTARY_ANVIL") {
        return p.into();
    }
    match option_env!("TRIBUTARY_ANVIL") {
        Some(p) if Path::new(p).exists() => p.into(),
        _ => "anvil".into(),
    }
}

/// Options for [`LocalAnvil::start`].
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// Load the chain from this file when it exists and dump it there while running and on
    /// exit, so the chain survives restarts.
    pub state_file: Option<PathBuf>,
    /// Mine a block every this many seconds instead of one per transaction.
    pub block_time: Option<u64>,
    /// Chain id (anvil's default is 31337).
    pub chain_id: Option<u64>,
    /// Keep only recent block states, in memory (anvil's `--prune-history`). Without it anvil
    /// writes every older block's full state under `~/.foundry/anvil/tmp`: gigabytes for a
    /// chain of many thousands of blocks. Blocks, receipts and logs are kept either way.
    pub prune_history: bool,
}

/// A running anvil; stopped (SIGTERM, so it can dump its state) when dropped.
#[derive(Debug)]
pub struct LocalAnvil {
    child: Child,
    url: Url,
}

impl LocalAnvil {
    /// Starts anvil on a free loopback port and waits until it listens.
    pub fn start(options: &AnvilOptions) -> Result<Self> {
        let bin = anvil_binary();
        let mut last_err = String::new();
        // A port found free can be taken before anvil binds it: try a few.
        for _ in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(&bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // If this process dies, even by SIGKILL, the kernel sends anvil SIGTERM: no orphan
            // keeps the port and the state file.
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            if let Some(state) = &options.state_file {
                cmd.arg("--state")
                    .arg(state)
                    .args(["--state-interval", "1"]);
            }
            if let Some(id) = options.chain_id {
                cmd.args(["--chain-id", &id.to_string()]);
            }
            if options.prune_history {
                cmd.arg("--prune-history");
            }
            if let Some(t) = options.block_time {
                cmd.args(["--block-time", &t.to_string()]);
            }
            let mut child = cmd.spawn().map_err(|e| {
                Error::Anvil(format!(
                    "cannot run {}: {e}; run `make setup` (installs anvil) or set TRIBUTARY_ANVIL",
                    bin.display()
                ))
            })?;
            match wait_listening(&mut child) {
                Ok(()) => {
                    let url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("valid url");
                    tracing::info!(%url, "anvil started");
                    return Ok(Self { child, url });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = e;
                }
            }
        }
        Err(Error::Anvil(format!("did not start: {last_err}")))
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl Drop for LocalAnvil {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process by pid; the worst case is ESRCH.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        // Up to a minute to write its state on exit (a large chain on a busy machine): killed
        // sooner, the chain since the last periodic dump would be lost.
        for _ in 0..600 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Anvil(format!("no free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Anvil(e.to_string()))?
        .port())
}

fn wait_listening(child: &mut Child) -> std::result::Result<(), String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(|l| l.ok()) {
            if line.contains("Listening on") {
                let _ = tx.send(Ok(()));
                break;
            }
        }
        // Keep draining so anvil never blocks on a full pipe.
        for _ in lines {}
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep the last lines only: anvil may run for hours.
        let mut tail = std::collections::VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let _ = etx.send(Vec::from(tail).join("\n"));
    });
    // Anvil that exits early ends the wait at once (the reader's channel closes); this
    // bounds only one that neither listens nor exits (a busy machine loading a large state
    // takes a while).
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let stderr = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            let what = match e {
                mpsc::RecvTimeoutError::Timeout => "no \"Listening on\" within 300 s",
                mpsc::RecvTimeoutError::Disconnected => "exited before listening",
            };
            Err(format!("{what}; stderr: {stderr}"))
        }
    }
}
