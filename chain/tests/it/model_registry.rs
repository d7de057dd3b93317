use alloy::primitives::{B256, U256};
use tributary_chain::bindings::InferenceLedger::{self, InferenceLedgerErrors as LE};
use tributary_chain::bindings::ModelRegistry::{self, ModelRegistryErrors as E};
use tributary_chain::send;

use crate::common::{ALICE, env, event, revert};

fn h(b: u8) -> B256 {
    B256::repeat_byte(b)
}

#[tokio::test]
async fn models_snapshots_adapters_and_publisher_role() {
    let env = env().await;
    let reg = env.chain.model_registry();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = ModelRegistry::new(*reg.address(), alice_p);
    let publisher = reg.PUBLISHER_ROLE().call().await.unwrap();

    let refused = send(as_alice.registerBaseModel(h(1), h(2), "gpt2".into(), "u".into())).await;
    // The message names the role, where it is held and how it is granted.
    let message = refused.as_ref().unwrap_err().to_string();
    assert!(
        message.contains(&format!("{alice} lacks PUBLISHER_ROLE"))
            && message.contains("on the ModelRegistry")
            && message.contains("grantRole"),
        "{message}"
    );
    match revert::<E, _>(refused) {
        E::MissingRole(e) => assert_eq!((e.role, e.account), (publisher, alice)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        revert::<E, _>(send(as_alice.grantRole(publisher, alice)).await),
        E::MissingRole(_)
    ));
    // Snapshots and adapters too: nothing enters the lineage from outside the role.
    for refused in [
        send(as_alice.commitSnapshot(h(3), vec![], vec![], h(4), U256::from(1))).await,
        send(as_alice.publishAdapter(
            h(5),
            h(1),
            vec![],
            h(3),
            h(6),
            h(7),
            "u".into(),
            "line@1.0.0".into(),
        ))
        .await,
    ] {
        match revert::<E, _>(refused) {
            E::MissingRole(e) => assert_eq!((e.role, e.account), (publisher, alice)),
            other => panic!("{other:?}"),
        }
    }

    let r = send(reg.registerBaseModel(h(1), h(2), "gpt2".into(), "file:///base".into()))
        .await
        .unwrap();
    let ev: ModelRegistry::BaseModelRegistered = event(&r);
    assert_eq!(
        (
            ev.id,
            ev.weightsHash,
            ev.architecture.as_str(),
            ev.uri.as_str()
        ),
        (h(1), h(2), "gpt2", "file:///base")
    );
    assert!(matches!(
        revert::<E, _>(send(reg.registerBaseModel(h(1), h(2), "gpt2".into(), "".into())).await),
        E::AlreadyRegistered(_)
    ));

    let mismatch = reg.commitSnapshot(h(3), vec![U256::from(1)], vec![], h(4), U256::from(10));
    assert!(matches!(
        revert::<E, _>(send(mismatch).await),
        E::LengthMismatch(_)
    ));
    let r = send(reg.commitSnapshot(
        h(3),
        vec![U256::from(1), U256::from(2)],
        vec![5, 6],
        h(4),
        U256::from(10),
    ))
    .await
    .unwrap();
    let ev: ModelRegistry::SnapshotCommitted = event(&r);
    assert_eq!(
        (
            ev.id,
            ev.datanetIds,
            ev.lakeVersions,
            ev.contributionsRoot,
            ev.count
        ),
        (
            h(3),
            vec![U256::from(1), U256::from(2)],
            vec![5, 6],
            h(4),
            U256::from(10)
        )
    );

    let versioned = |id: u8, version: &str, base: u8, parents: Vec<B256>, snap: u8| {
        reg.publishAdapter(
            h(id),
            h(base),
            parents,
            h(snap),
            h(8),
            h(9),
            "file:///a".into(),
            version.into(),
        )
    };
    let adapter = |id: u8, base: u8, parents: Vec<B256>, snap: u8| {
        versioned(id, &format!("line@1.0.{id}"), base, parents, snap)
    };
    assert!(matches!(
        revert::<E, _>(send(adapter(10, 0x55, vec![], 3)).await),
        E::UnknownBaseModel(_)
    ));
    assert!(matches!(
        revert::<E, _>(send(adapter(10, 1, vec![], 0x55)).await),
        E::UnknownSnapshot(_)
    ));
    assert!(matches!(
        revert::<E, _>(send(adapter(10, 1, vec![h(0x66)], 3)).await),
        E::UnknownAdapter(_)
    ));
    let r = send(adapter(10, 1, vec![], 3)).await.unwrap();
    let ev: ModelRegistry::AdapterPublished = event(&r);
    assert_eq!(
        (
            ev.id,
            ev.baseModelId,
            ev.parentIds.clone(),
            ev.snapshotId,
            ev.configHash,
            ev.weightsHash,
            ev.uri.as_str(),
            ev.version.as_str()
        ),
        (
            h(10),
            h(1),
            vec![],
            h(3),
            h(8),
            h(9),
            "file:///a",
            "line@1.0.10"
        )
    );
    // A version names one adapter: another adapter under a taken version is refused, so two
    // workers racing to publish the same version publish once.
    match revert::<E, _>(send(versioned(12, "line@1.0.10", 1, vec![], 3)).await) {
        E::VersionTaken(e) => assert_eq!((e.version.as_str(), e.adapterId), ("line@1.0.10", h(10))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reg.adapterByVersion(alloy::primitives::keccak256("line@1.0.10"))
            .call()
            .await
            .unwrap(),
        h(10)
    );
    let r = send(adapter(11, 1, vec![h(10)], 3)).await.unwrap();
    assert_eq!(
        event::<ModelRegistry::AdapterPublished>(&r).parentIds,
        vec![h(10)]
    );
    assert!(matches!(
        revert::<E, _>(send(adapter(11, 1, vec![], 3)).await),
        E::AlreadyRegistered(_)
    ));

    // The admin grants the role; then Alice may publish.
    let r = send(reg.grantRole(publisher, alice)).await.unwrap();
    let ev: ModelRegistry::RoleGranted = event(&r);
    assert_eq!(
        (ev.role, ev.account, ev.sender),
        (publisher, alice, env.chain.signer())
    );
    send(as_alice.registerBaseModel(h(0x20), h(2), "llama".into(), "".into()))
        .await
        .unwrap();
    let r = send(reg.revokeRole(publisher, alice)).await.unwrap();
    assert_eq!(event::<ModelRegistry::RoleRevoked>(&r).account, alice);
    assert!(matches!(
        revert::<E, _>(
            send(as_alice.registerBaseModel(h(0x21), h(2), "llama".into(), "".into())).await
        ),
        E::MissingRole(_)
    ));
}

#[tokio::test]
async fn inference_batches_and_recorder_role() {
    let env = env().await;
    let ledger = env.chain.inference_ledger();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = InferenceLedger::new(*ledger.address(), alice_p);
    let recorder = ledger.RECORDER_ROLE().call().await.unwrap();
    macro_rules! record {
        ($l:expr, $batch:expr, $count:expr) => {
            $l.recordInferences(
                h($batch),
                vec![h(1), h(2)],
                h(3),
                U256::from($count),
                "file:///inf".into(),
            )
        };
    }
    match revert::<LE, _>(send(record!(as_alice, 1, 2)).await) {
        LE::MissingRole(e) => assert_eq!((e.role, e.account), (recorder, alice)),
        other => panic!("{other:?}"),
    }
    let r = send(record!(ledger, 1, 2)).await.unwrap();
    let ev: InferenceLedger::InferencesRecorded = event(&r);
    assert_eq!(
        (
            ev.batchId,
            ev.adapterIds,
            ev.merkleRoot,
            ev.count,
            ev.manifestURI.as_str()
        ),
        (h(1), vec![h(1), h(2)], h(3), U256::from(2), "file:///inf")
    );
    assert!(matches!(
        revert::<LE, _>(send(record!(ledger, 1, 2)).await),
        LE::BatchAlreadyRecorded(_)
    ));
    assert!(matches!(
        revert::<LE, _>(send(record!(ledger, 2, 0)).await),
        LE::EmptyBatch(_)
    ));
    // A zero root would read as never recorded (and could be recorded again).
    let zero = ledger.recordInferences(h(2), vec![], B256::ZERO, U256::from(1), "".into());
    assert!(matches!(
        revert::<LE, _>(send(zero).await),
        LE::EmptyRoot(_)
    ));
}
