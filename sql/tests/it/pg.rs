//! A private PostgreSQL server in a temp dir on a free port, stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct Postgres {
    pub(crate) url: String,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIBUTARY_PG_BIN").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let listing = Command::new("dpkg").args(["-L", "postgresql-15"]).output();
    let listing = listing
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if let Some(initdb) = listing.lines().find(|l| l.ends_with("/bin/initdb")) {
        return Path::new(initdb).parent().unwrap().to_path_buf();
    }
    panic!(
        "PostgreSQL server binaries not found: run `make setup` (installs postgresql-15) or set TRIBUTARY_PG_BIN"
    )
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn run(bin: &Path, tool: &str, args: &[&str]) {
    let is_root = euid() == 0;
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn euid() -> u32 {
    // `id -u` keeps this test crate free of libc.
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1)
}

impl Postgres {
    pub(crate) fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("tributary-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        if euid() == 0 {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = data.to_str().unwrap();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                d,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                // Text sorted as most deployments sort it (a language's collation, not
                // bytes): a query that assumes byte order fails here as it would there.
                "--locale-provider=icu",
                "--icu-locale=en-US",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        run(
            &bin,
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-w",
                "-t",
                "600", // a failsafe (the default is 60 s): a busy machine starts it slowly
                "-l",
                &format!("{d}/../log"),
                "start",
            ],
        );
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            data,
            _dir: dir,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        run(
            &self.bin,
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
