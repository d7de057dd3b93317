//! Snapshots take only the rows the chain vouches for, whatever else wrote the lake.

use std::collections::BTreeSet;

use alloy::primitives::{Address, B256, U256};
use tributary_chain::keys::dev_contributor;
use tributary_pipeline::chain_state::ChainState;
use tributary_pipeline::ingest::{contribution_rows, ingest};
use tributary_pipeline::sample;
use tributary_pipeline::snapshot;
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
use tributary_schemas::tables::names;

use crate::common::sign_record;
use crate::ingest::env;

/// Another engine (or a careless copy) writes the `contributions` table: it rewrites a row's
/// contributor (which would send that row's rewards elsewhere), and appends a properly signed
/// contribution under an anchored batch's id that the batch never held. A snapshot takes
/// neither: the rewritten row no longer hashes to its id, and the appended one is not among
/// the ids the batch's manifest lists (its rows' Merkle root differs from the chain's). Rows
/// another engine deleted leave the rest of their batch in. Before, a snapshot took every row
/// of an anchored batch as it found it.
#[tokio::test]
async fn snapshots_take_only_rows_their_batch_was_anchored_with() {
    let env = env().await;
    let d = env.domain();
    let records = sample::records(6);
    let signed: Vec<_> = records[..4]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            sign_record(
                &dev_contributor(i % 2),
                &d,
                env.datanet,
                r.clone(),
                "CC0-1.0",
                i as u64,
                u64::MAX,
            )
        })
        .collect();
    let batch = ingest(&env.chain, &env.lake, env.datanet, signed.clone())
        .await
        .unwrap()
        .batch
        .batch_id;
    let ours: BTreeSet<B256> = signed.iter().map(|s| s.contribution.id()).collect();

    // A contribution signed for this Datanet but never anchored, appended under the batch.
    let stray = sign_record(
        &dev_contributor(2),
        &d,
        env.datanet,
        records[4].clone(),
        "CC0-1.0",
        40,
        u64::MAX,
    );
    let stray_id = stray.contribution.id();
    // One of the batch's rows with its contributor rewritten to someone else's address.
    let mut stolen = signed[0].clone();
    stolen.contribution.contributor = Address::repeat_byte(0xee);
    let rows = contribution_rows(
        env.datanet,
        batch,
        &[(stray_id, stray), (signed[0].contribution.id(), stolen)],
    )
    .unwrap();
    env.lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![rows])
        .commit()
        .await
        .unwrap();

    // A batch anchored with a row whose signature is not its contributor's (written by an
    // engine that skipped the checks `contribute` makes).
    let mut forged = sign_record(
        &dev_contributor(3),
        &d,
        env.datanet,
        records[5].clone(),
        "CC0-1.0",
        50,
        u64::MAX,
    );
    forged.contribution.contributor = dev_contributor(4).address();
    let forged_id = forged.contribution.id();
    let forged_batch = BatchManifest::batch_id_of(env.datanet, &[forged_id]);
    env.lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![
            contribution_rows(env.datanet, forged_batch, &[(forged_id, forged)]).unwrap(),
        ])
        .commit()
        .await
        .unwrap();
    tributary_chain::send(env.chain.datanet_registry().anchorBatch(
        U256::from(env.datanet),
        forged_batch,
        MerkleTree::new(vec![leaf_bytes32(forged_id)]).root(),
        U256::from(1),
        "nowhere".into(),
        B256::ZERO,
        0,
    ))
    .await
    .unwrap();

    let on_chain = ChainState::read(&env.chain).await.unwrap();
    let m = snapshot::freeze(&env.lake, &on_chain, &[env.datanet], None)
        .await
        .unwrap();
    let ids: BTreeSet<B256> = m.contributions.iter().map(|c| c.id).collect();
    assert_eq!(ids, ours, "the stray and the forged rows are left out");
    assert!(
        m.contributions
            .iter()
            .all(|c| c.contributor != Address::repeat_byte(0xee)),
        "the rewritten row is left out: {:?}",
        m.contributions
    );
    assert_eq!(m.contributions.len(), 4, "each contribution once");

    // Another engine deletes one of the batch's rows: the rest still count.
    let gone = signed[1].contribution.id();
    env.lake
        .delete(names::CONTRIBUTIONS, &format!("contribution_id = '{gone}'"))
        .await
        .unwrap();
    let m = snapshot::freeze(&env.lake, &on_chain, &[env.datanet], None)
        .await
        .unwrap();
    let ids: BTreeSet<B256> = m.contributions.iter().map(|c| c.id).collect();
    let mut want = ours.clone();
    want.remove(&gone);
    assert_eq!(ids, want);

    // Without the batch's manifest, rows that differ from its anchor cannot be told apart:
    // none of them is taken.
    std::fs::remove_file(env.dir.path().join("lake").join(BatchManifest::key(batch))).unwrap();
    let err = snapshot::freeze(&env.lake, &on_chain, &[env.datanet], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to freeze"), "{err}");
}
