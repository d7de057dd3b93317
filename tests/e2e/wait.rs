//! Waits that derive from progress, not from wall-clock limits tuned on an idle machine.
//!
//! A test waiting on something (a line, a port, a run, the indexer) fails only when for a
//! whole [`STALL`] it has not come, nothing the wait watches moved, and the test process and
//! every process it started spent under a tenth of a core's time between them: a loaded
//! machine that keeps working passes, and a wait that nothing will end (a lost event, a
//! process stuck idle or only polling) fails with its reason instead of hanging CI.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a wait may see no progress before it fails.
pub(crate) const STALL: Duration = Duration::from_secs(300);

/// The longest any wait may take, working or not: a wait whose process tree keeps working but
/// never gets there (a busy loop, pollers) fails here rather than hanging CI.
const CEILING: Duration = Duration::from_secs(3600);

/// CPU time, in clock ticks (USER_HZ: 100 per second on Linux), the test's processes must
/// spend in a [`STALL`] to count as working: a tenth of one core (30 s), more than processes
/// that only poll spend, less than any that compute on a loaded machine.
const WORKING_TICKS: u64 = STALL.as_secs() * 100 / 10;

/// CPU time (`utime + stime` of `/proc/PID/stat`, in clock ticks: USER_HZ, 100 per second on
/// Linux) of this test process and every live process descended from it, by pid. Linux only,
/// as the suite is (anvil, PostgreSQL and libtorch are installed for Linux): elsewhere the map
/// is empty and a stall is any [`STALL`] without the awaited thing.
fn descendants_cpu() -> HashMap<u32, u64> {
    let mut parent_ticks = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state (3), ppid (4), …, utime (14), stime (15).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(ppid), Some(user), Some(system)) = (num(1), num(11), num(12)) {
            parent_ticks.push((pid, ppid as u32, user + system));
        }
    }
    let mut out = HashMap::new();
    let mut frontier = vec![std::process::id()];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, ticks) in &parent_ticks {
            if pid == p {
                out.insert(pid, ticks);
            } else if ppid == p {
                frontier.push(pid);
            }
        }
    }
    out
}

/// Progress of the test's process tree since the wait began: call [`Progress::check`] on
/// every poll.
pub(crate) struct Progress {
    seen: HashMap<u32, u64>,
    spent: u64,
    moved: Instant,
    began: Instant,
    /// When `/proc` was last read (at most once a second: a poll may come every 100 ms).
    read: Instant,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            seen: descendants_cpu(),
            spent: 0,
            moved: Instant::now(),
            began: Instant::now(),
            read: Instant::now(),
        }
    }

    /// Something the wait watches changed (a line, a run's state): progress.
    pub(crate) fn moved(&mut self) {
        (self.spent, self.moved) = (0, Instant::now());
    }

    /// Panics with `what` when for a whole [`STALL`] nothing moved and the process tree spent
    /// under [`WORKING_TICKS`] of CPU time, or after [`CEILING`] in any case.
    pub(crate) fn check(&mut self, what: impl std::fmt::Display) {
        if self.read.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.read = Instant::now();
        assert!(
            self.began.elapsed() < CEILING,
            "{what}: not there after {CEILING:?}, though the processes kept working"
        );
        let now = descendants_cpu();
        self.spent += now
            .iter()
            .map(|(pid, &t)| t.saturating_sub(self.seen.get(pid).copied().unwrap_or(0)))
            .sum::<u64>();
        self.seen = now;
        if self.moved.elapsed() > STALL {
            assert!(
                self.spent >= WORKING_TICKS,
                "{what}: no progress for {STALL:?} (nothing moved, {:.1} s of CPU time)",
                self.spent as f64 / 100.0
            );
            self.moved();
        }
    }
}

/// Polls `done` every `poll` until it returns a value, for as long as there is progress (see
/// [`Progress`]); panics with `what` otherwise.
pub(crate) fn until<T>(
    what: impl std::fmt::Display,
    poll: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let mut p = Progress::new();
    loop {
        if let Some(out) = done() {
            return out;
        }
        p.check(&what);
        std::thread::sleep(poll);
    }
}
