use std::path::Path;
use std::process::Command;

/// The committed ABI + bytecode must be what solc-js makes of `contracts/src` today.
#[test]
fn committed_artifacts_match_the_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("node")
        .arg(root.join("contracts/build.js"))
        .arg("--check")
        .output()
        .expect("node runs (install Node.js; `make test` sets up solc-js)");
    assert!(
        out.status.success(),
        "contracts/out is stale or solc-js is missing:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
