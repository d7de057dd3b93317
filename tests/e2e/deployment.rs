//! An existing deployment: the contracts are deployed by another process (with its own data
//! directory and key); a second data directory names them only by configuration and indexes,
//! queries, verifies and serves the API without any key; writes still need one; a chain with
//! no known deployment is refused instead of getting a fresh set of contracts.

use std::path::Path;

use tributary_chain::anvil::{AnvilOptions, LocalAnvil};
use tributary_chain::keys::ANVIL_DEV_KEY;

use crate::cli::tributary;
use crate::jobs::{sigterm, start};

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/kitchen-conversions.toml"
);

fn output(c: &mut std::process::Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn an_existing_deployment_is_indexed_and_served_without_a_key() {
    // Not a dev chain id: nothing is deployed without being asked.
    let anvil = LocalAnvil::start(&AnvilOptions {
        chain_id: Some(4242),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (owner, reader) = (dir.path().join("owner"), dir.path().join("reader"));
    let cmd = |data: &Path, args: &[&str]| {
        let mut c = tributary();
        c.args(args)
            .arg("--data-dir")
            .arg(data)
            .arg("--rpc-url")
            .arg(anvil.url().as_str())
            .env_remove("TRIBUTARY_PRIVATE_KEY")
            .env_remove("TRIBUTARY_DEPLOYMENT")
            .current_dir(dir.path());
        c
    };

    // No deployment known: a read is refused with the fix, and nothing is deployed.
    let (ok, _, err) = output(&mut cmd(&reader, &["index"]));
    assert!(!ok);
    assert!(
        err.contains("no Tributary deployment is known for chain 4242")
            && err.contains("[chain]")
            && err.contains("tributary deploy"),
        "{err}"
    );
    assert!(!reader.join("deployment.json").exists());

    // The owner deploys from its own process, with its key, and creates a Datanet.
    let (ok, deployed, err) =
        output(cmd(&owner, &["deploy"]).env("TRIBUTARY_PRIVATE_KEY", ANVIL_DEV_KEY));
    assert!(ok, "{err}");
    let section = &deployed[deployed.find("[chain]").expect("a [chain] section")..];
    let (ok, _, err) = output(
        cmd(&owner, &["datanet", "create", MANIFEST]).env("TRIBUTARY_PRIVATE_KEY", ANVIL_DEV_KEY),
    );
    assert!(ok, "{err}");

    // The reader names the contracts in its tributary.toml and holds no key.
    let config = dir.path().join("reader.toml");
    std::fs::write(&config, section).unwrap();
    let with_config = |args: &[&str]| {
        let mut c = cmd(&reader, args);
        c.arg("--config-file").arg(&config);
        c
    };
    let (ok, _, err) = output(&mut with_config(&["index"]));
    assert!(ok, "{err}");
    let (ok, rows, err) = output(&mut with_config(&[
        "sql",
        "--format",
        "csv",
        "SELECT name FROM datanets",
    ]));
    assert!(ok && rows.contains("kitchen-conversions"), "{rows}{err}");
    assert!(
        !reader.join("deployment.json").exists(),
        "no contracts of its own"
    );
    let (ok, out, _) = output(&mut with_config(&[
        "verify",
        &format!("0x{}", "ab".repeat(32)),
    ]));
    assert!(!ok && out.contains("NOT VERIFIED"), "{out}");
    // A deployment record file works the same.
    let record = owner.join("deployment.json").display().to_string();
    let (ok, _, err) = output(&mut cmd(
        &dir.path().join("third"),
        &["index", "--deployment", &record],
    ));
    assert!(ok, "{err}");

    // Writes still need a key.
    let (ok, _, err) = output(&mut with_config(&["datanet", "create", MANIFEST]));
    assert!(!ok && err.contains("TRIBUTARY_PRIVATE_KEY"), "{err}");

    // Serving the API and the indexer needs no key either.
    let mut serve = with_config(&[
        "serve",
        "--only",
        "api,indexer",
        "--listen",
        "127.0.0.1:0",
        "--pg-listen",
        "127.0.0.1:0",
    ]);
    let w = start(std::mem::replace(&mut serve, tributary()));
    let base = w.base();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        w.wait_ready(&http).await;
        let gql: serde_json::Value = http
            .post(format!("{base}/graphql"))
            .json(&serde_json::json!({"query": "{ chainId datanets { name } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(gql["data"]["chainId"], 4242, "{gql}");
        assert_eq!(
            gql["data"]["datanets"][0]["name"], "kitchen-conversions",
            "{gql}"
        );
    });
    sigterm(&w.child);
}

/// `tributary deploy` on a chain that mines nothing fails within the receipt timeout
/// (`TRIBUTARY_RECEIPT_TIMEOUT`), naming the transaction and the fix, and records no
/// deployment; before, it waited for the first contract's receipt forever. A timeout that is
/// not a number is refused by name.
#[test]
fn deploy_on_a_chain_that_mines_nothing_fails_in_time() {
    let anvil = LocalAnvil::start(&AnvilOptions {
        chain_id: Some(4343),
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mined: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(anvil.url().as_str())
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "evm_setAutomine", "params": [false]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(mined.get("error").is_none(), "{mined}");
    let dir = tempfile::tempdir().unwrap();
    let deploy = |timeout: &str| {
        output(
            tributary()
                .args(["deploy", "--data-dir"])
                .arg(dir.path())
                .arg("--rpc-url")
                .arg(anvil.url().as_str())
                .env("TRIBUTARY_PRIVATE_KEY", ANVIL_DEV_KEY)
                .env("TRIBUTARY_RECEIPT_TIMEOUT", timeout)
                .env_remove("TRIBUTARY_DEPLOYMENT")
                .current_dir(dir.path()),
        )
    };
    let (ok, _, err) = deploy("2");
    assert!(!ok);
    assert!(
        err.contains("was not mined within 2 s") && err.contains("TRIBUTARY_RECEIPT_TIMEOUT"),
        "{err}"
    );
    assert!(!dir.path().join("deployment.json").exists());
    let (ok, _, err) = deploy("soon");
    assert!(
        !ok && err.contains("TRIBUTARY_RECEIPT_TIMEOUT=\"soon\""),
        "{err}"
    );
}
