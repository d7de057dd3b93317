use std::process::Command;

pub(crate) fn tributary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env_remove("TRIBUTARY_DATA_DIR")
        .env_remove("TRIBUTARY_RPC_URL")
        .env_remove("TRIBUTARY_STORE");
    c
}

/// Runs `cmd`, which must succeed (else fails with the command, its output and its errors);
/// its standard output.
pub(crate) fn succeeded(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn help_lists_the_commands() {
    let out = tributary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "index", "serve", "doctor"] {
        assert!(text.contains(cmd), "--help does not list {cmd}:\n{text}");
    }
}

#[test]
fn doctor_finds_anvil_and_libtorch() {
    let out = tributary()
        .args(["doctor", "--device", "cpu"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("anvil") && text.contains("libtorch ok on Cpu"),
        "{text}"
    );
}

#[test]
fn the_demo_refuses_to_wipe_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = tributary()
        .args(["demo", "--exit", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not made by `tributary demo`"), "{err}");
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn serve_refuses_a_fee_no_amount_column_holds() {
    // 10^35 units a token times 4,096 tokens is past 10^38 - 1, the largest exact amount.
    let dir = tempfile::tempdir().unwrap();
    let out = tributary()
        .args([
            "serve",
            "--fee-per-token",
            "100000000000000000000000000000000000",
        ])
        .args(["--max-context", "4096", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--fee-per-token") && err.contains("lower the fee"),
        "{err}"
    );
}

/// `sql` and `verify` on a lake root that holds no Tributary tables (a mistyped `--lake`) say
/// so and name the fix, instead of answering from empty tables made there (or "NOT VERIFIED").
#[test]
fn reading_commands_refuse_a_lake_root_nothing_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("lkae");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let id = format!("0x{}", "ab".repeat(32));
    for root in [&typo, &empty] {
        for args in [
            vec!["sql", "SELECT count(*) FROM contributions"],
            vec!["verify", id.as_str()],
        ] {
            let out = tributary()
                .args(&args)
                .arg("--data-dir")
                .arg(dir.path())
                .arg("--lake")
                .arg(root)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} at {}", root.display());
            assert!(
                err.contains("no Tributary lake at") && err.contains("check --lake"),
                "{args:?}: {err}"
            );
        }
    }
    assert!(!typo.exists(), "nothing is made at a mistyped root");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nor in an empty one"
    );
}
