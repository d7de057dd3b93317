use alloy::primitives::{B256, U256, keccak256};
use tributary_chain::bindings::DatanetRegistry::{self, DatanetRegistryErrors as E};
use tributary_chain::send;
use tributary_schemas::contribution::{Contribution, domain};
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};

use crate::common::{ALICE, BOB, env, event, revert};

#[tokio::test]
async fn datanets_batches_validations_and_their_access_rules() {
    let env = env().await;
    let owner = env.chain.signer();
    let reg = env.chain.datanet_registry();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = DatanetRegistry::new(*reg.address(), alice_p);

    // create: event fields; names are unique and non-empty
    let r = send(reg.createDatanet(
        "recipes".into(),
        "cooking".into(),
        B256::repeat_byte(7),
        "file:///m.json".into(),
    ))
    .await
    .unwrap();
    let ev: DatanetRegistry::DatanetCreated = event(&r);
    assert_eq!(
        (
            ev.id,
            ev.owner,
            ev.name.as_str(),
            ev.domain.as_str(),
            ev.schemaHash,
            ev.metadataURI.as_str()
        ),
        (
            U256::from(1),
            owner,
            "recipes",
            "cooking",
            B256::repeat_byte(7),
            "file:///m.json"
        )
    );
    assert!(matches!(
        revert::<E, _>(
            send(reg.createDatanet("recipes".into(), "x".into(), B256::ZERO, "".into())).await
        ),
        E::NameTaken(_)
    ));
    assert!(matches!(
        revert::<E, _>(send(reg.createDatanet("".into(), "x".into(), B256::ZERO, "".into())).await),
        E::EmptyName(_)
    ));
    let id = U256::from(1);

    // anchor: only anchorers; a batch id once; never empty; only known Datanets. Batch `n`
    // has root `n` and the id `batchIdOf` gives it.
    let batch = |n: u8| BatchManifest::batch_id_at(1, B256::repeat_byte(n));
    assert_eq!(
        reg.batchIdOf(id, B256::repeat_byte(1))
            .call()
            .await
            .unwrap(),
        batch(1),
        "the registry derives batch ids as the pipeline does"
    );
    macro_rules! anchor {
        ($r:expr, $batch:expr, $count:expr) => {
            $r.anchorBatch(
                id,
                batch($batch),
                B256::repeat_byte($batch),
                U256::from($count),
                "uri".into(),
                B256::repeat_byte(3),
                4,
            )
        };
    }
    match revert::<E, _>(send(anchor!(as_alice, 1, 1)).await) {
        E::NotAnchorer(e) => assert_eq!((e.id, e.account), (id, alice)),
        other => panic!("{other:?}"),
    }
    let r = send(anchor!(reg, 1, 5)).await.unwrap();
    let ev: DatanetRegistry::BatchAnchored = event(&r);
    assert_eq!(
        (
            ev.datanetId,
            ev.batchId,
            ev.merkleRoot,
            ev.count,
            ev.manifestURI.as_str(),
            ev.manifestHash,
            ev.lakeVersion
        ),
        (
            id,
            batch(1),
            B256::repeat_byte(1),
            U256::from(5),
            "uri",
            B256::repeat_byte(3),
            4
        )
    );
    assert!(matches!(
        revert::<E, _>(send(anchor!(reg, 1, 5)).await),
        E::BatchAlreadyAnchored(_)
    ));
    assert!(matches!(
        revert::<E, _>(send(anchor!(reg, 2, 0)).await),
        E::EmptyBatch(_)
    ));
    let unknown = reg.anchorBatch(
        U256::from(9),
        B256::ZERO,
        B256::ZERO,
        U256::from(1),
        "".into(),
        B256::ZERO,
        0,
    );
    assert!(matches!(
        revert::<E, _>(send(unknown).await),
        E::UnknownDatanet(_)
    ));

    // roles per Datanet: only its owner grants them
    match revert::<E, _>(send(as_alice.setAnchorer(id, alice, true)).await) {
        E::NotDatanetOwner(e) => assert_eq!((e.id, e.account), (id, alice)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        revert::<E, _>(send(as_alice.setValidator(id, alice, true)).await),
        E::NotDatanetOwner(_)
    ));
    let r = send(reg.setAnchorer(id, alice, true)).await.unwrap();
    let ev: DatanetRegistry::AnchorerSet = event(&r);
    assert_eq!((ev.datanetId, ev.account, ev.allowed), (id, alice, true));
    send(anchor!(as_alice, 2, 1))
        .await
        .expect("an appointed anchorer may anchor");

    // validations: only validators, only on anchored batches of that Datanet
    macro_rules! validate {
        ($r:expr, $batch:expr) => {
            $r.recordValidation(
                id,
                batch($batch),
                B256::repeat_byte(9),
                U256::from(4),
                U256::from(1),
            )
        };
    }
    match revert::<E, _>(send(validate!(as_alice, 1)).await) {
        E::NotValidator(e) => assert_eq!((e.id, e.account), (id, alice)),
        other => panic!("{other:?}"),
    }
    let r = send(reg.setValidator(id, alice, true)).await.unwrap();
    let ev: DatanetRegistry::ValidatorSet = event(&r);
    assert_eq!((ev.datanetId, ev.account, ev.allowed), (id, alice, true));
    assert!(matches!(
        revert::<E, _>(send(validate!(as_alice, 0x77)).await),
        E::UnknownBatch(_)
    ));
    let r = send(validate!(as_alice, 1)).await.unwrap();
    let ev: DatanetRegistry::ValidationRecorded = event(&r);
    assert_eq!(
        (
            ev.datanetId,
            ev.batchId,
            ev.validator,
            ev.verdictsRoot,
            ev.accepted,
            ev.rejected
        ),
        (
            id,
            batch(1),
            alice,
            B256::repeat_byte(9),
            U256::from(4),
            U256::from(1)
        )
    );
}

/// A batch id names one Datanet's batch (`batchIdOf(datanetId, merkleRoot)`): whoever runs
/// another Datanet (anyone may create one, and anchors its batches) cannot anchor an id read
/// from a lake manifest or the mempool first, which would block the real batch or let them
/// record verdicts on it as their own.
#[tokio::test]
async fn another_datanets_anchorer_cannot_take_a_batch_id() {
    let env = env().await;
    let reg = env.chain.datanet_registry();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = DatanetRegistry::new(*reg.address(), alice_p);
    send(reg.createDatanet("a".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    send(as_alice.createDatanet("b".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    send(as_alice.setValidator(U256::from(2), alice, true))
        .await
        .unwrap();
    let (a, b) = (U256::from(1), U256::from(2));
    let root = B256::repeat_byte(0x51);
    let (ours, hers) = (
        BatchManifest::batch_id_at(1, root),
        BatchManifest::batch_id_at(2, root),
    );
    macro_rules! anchor {
        ($r:expr, $d:expr, $batch:expr, $root:expr) => {
            $r.anchorBatch($d, $batch, $root, U256::from(3), "".into(), B256::ZERO, 0)
        };
    }
    // Alice anchors Datanet A's batch id under her Datanet B: with its root or another.
    for r in [root, B256::repeat_byte(0x66)] {
        match revert::<E, _>(send(anchor!(as_alice, b, ours, r)).await) {
            E::BatchIdMismatch(e) => {
                assert_eq!(
                    (e.batchId, e.expected),
                    (ours, BatchManifest::batch_id_at(2, r))
                )
            }
            other => panic!("{other:?}"),
        }
    }
    // The same contributions in her own Datanet make another id, which does not collide.
    send(anchor!(as_alice, b, hers, root)).await.unwrap();
    send(anchor!(reg, a, ours, root))
        .await
        .expect("Datanet A's batch is anchored by A's anchorer");
    let stored = reg.batch(ours).call().await.unwrap();
    assert_eq!((stored.datanetId, stored.merkleRoot), (a, root));
    // Her verdicts reach only her own Datanet's batches.
    let validate =
        |d, batch| as_alice.recordValidation(d, batch, B256::ZERO, U256::ZERO, U256::from(3));
    assert!(matches!(
        revert::<E, _>(send(validate(b, ours)).await),
        E::UnknownBatch(_)
    ));
    assert!(matches!(
        revert::<E, _>(send(validate(a, ours)).await),
        E::NotValidator(_)
    ));
    send(validate(b, hers)).await.unwrap();
}

#[tokio::test]
async fn proofs_verify_on_chain_and_forgeries_do_not() {
    let env = env().await;
    let reg = env.chain.datanet_registry();
    send(reg.createDatanet("d".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    for size in [1usize, 2, 3, 7, 33, 100, 513, 1025] {
        let ids: Vec<B256> = (0..size)
            .map(|i| keccak256(format!("{size}/{i}")))
            .collect();
        let tree = MerkleTree::new(ids.iter().map(|id| leaf_bytes32(*id)).collect());
        let batch = BatchManifest::batch_id_at(1, tree.root());
        send(reg.anchorBatch(
            U256::from(1),
            batch,
            tree.root(),
            U256::from(size),
            "".into(),
            B256::ZERO,
            0,
        ))
        .await
        .unwrap();
        for id in ids.iter().step_by(size.div_ceil(5)) {
            let proof = tree.proof(&leaf_bytes32(*id)).unwrap();
            assert!(
                reg.verifyContribution(batch, *id, proof.clone())
                    .call()
                    .await
                    .unwrap(),
                "size {size}"
            );
            // a leaf that is not in the batch, and a tampered proof
            assert!(
                !reg.verifyContribution(batch, keccak256(id), proof.clone())
                    .call()
                    .await
                    .unwrap()
            );
            if let Some(first) = proof.first() {
                let mut forged = proof.clone();
                forged[0] = keccak256(first);
                assert!(
                    !reg.verifyContribution(batch, *id, forged)
                        .call()
                        .await
                        .unwrap()
                );
            }
        }
    }
}

/// Revocation is scoped: the contribution's own contributor, or the owner of the Datanet it was
/// signed for and anchored in, may revoke it; nobody else, whatever Datanet they own.
#[tokio::test]
async fn contributors_and_owners_revoke_others_cannot() {
    let env = env().await;
    let reg = env.chain.datanet_registry();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = DatanetRegistry::new(*reg.address(), alice_p);
    // Datanet A (1) belongs to the deployer, Datanet B (2) to Alice.
    send(reg.createDatanet("a".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    send(as_alice.createDatanet("b".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    let (a, b) = (U256::from(1), U256::from(2));

    // The registry's EIP-712 domain separator and struct hash are the ones the off-chain
    // signer uses.
    let d = domain(env.chain.chain_id(), *reg.address());
    assert_eq!(reg.domainSeparator().call().await.unwrap(), d.separator());
    let of = |who, n: u64| Contribution {
        datanetId: a,
        contributor: who,
        contentHash: B256::repeat_byte(n as u8),
        license: "CC0-1.0".into(),
        timestamp: 1,
        nonce: n,
        deadline: u64::MAX,
    };
    let (bob_p, bob) = env.as_key(BOB);
    let as_bob = DatanetRegistry::new(*reg.address(), bob_p);
    let (mine, other) = (of(bob, 1), of(alice, 2));
    assert_eq!(
        reg.contributionIdOf((&mine).into()).call().await.unwrap(),
        mine.id()
    );

    // Both are anchored in a batch of Datanet A.
    let tree = MerkleTree::new(vec![leaf_bytes32(mine.id()), leaf_bytes32(other.id())]);
    let batch_a = BatchManifest::batch_id_at(1, tree.root());
    send(reg.anchorBatch(
        a,
        batch_a,
        tree.root(),
        U256::from(2),
        "".into(),
        B256::ZERO,
        0,
    ))
    .await
    .unwrap();
    let proof = |c: &Contribution| tree.proof(&leaf_bytes32(c.id())).unwrap();

    // Alice owns Datanet B: no power over A's contributions, even her own copy of one in a
    // batch of B (the id commits to Datanet A).
    match revert::<E, _>(
        send(as_alice.revokeContribution(batch_a, (&mine).into(), proof(&mine), "no".into())).await,
    ) {
        E::NotContributorOrOwner(e) => {
            assert_eq!((e.id, e.contributionId, e.account), (a, mine.id(), alice))
        }
        other => panic!("{other:?}"),
    }
    let batch_b = BatchManifest::batch_id_at(2, leaf_bytes32(mine.id()));
    send(as_alice.anchorBatch(
        b,
        batch_b,
        leaf_bytes32(mine.id()),
        U256::from(1),
        "".into(),
        B256::ZERO,
        0,
    ))
    .await
    .unwrap();
    match revert::<E, _>(
        send(as_alice.revokeContribution(batch_b, (&mine).into(), vec![], "mine now".into())).await,
    ) {
        E::NotInBatch(e) => assert_eq!((e.batchId, e.contributionId), (batch_b, mine.id())),
        other => panic!("{other:?}"),
    }
    // A proof that does not hold, an altered struct and an unknown batch are refused by name.
    let mut altered = mine.clone();
    altered.license = "MIT".into();
    for (batch, c, p) in [
        (batch_a, &mine, vec![B256::repeat_byte(9)]),
        (batch_a, &altered, proof(&mine)),
    ] {
        assert!(matches!(
            revert::<E, _>(send(as_bob.revokeContribution(batch, c.into(), p, "x".into())).await),
            E::NotInBatch(_)
        ));
    }
    assert!(matches!(
        revert::<E, _>(
            send(as_bob.revokeContribution(
                B256::repeat_byte(7),
                (&mine).into(),
                proof(&mine),
                "x".into()
            ))
            .await
        ),
        E::UnknownBatch(_)
    ));

    // Bob revokes his own from his wallet: no signature, no CLI.
    let r = send(as_bob.revokeContribution(
        batch_a,
        (&mine).into(),
        proof(&mine),
        "license withdrawn".into(),
    ))
    .await
    .unwrap();
    let ev: DatanetRegistry::ContributionRevoked = event(&r);
    assert_eq!(
        (ev.datanetId, ev.contributionId, ev.by, ev.reason.as_str()),
        (a, mine.id(), bob, "license withdrawn")
    );
    assert!(matches!(
        revert::<E, _>(
            send(as_bob.revokeContribution(batch_a, (&mine).into(), proof(&mine), "again".into()))
                .await
        ),
        E::AlreadyRevoked(_)
    ));
    // A revoked contribution no longer verifies, even with a valid proof.
    assert!(
        !reg.verifyContribution(batch_a, mine.id(), proof(&mine))
            .call()
            .await
            .unwrap()
    );
    // Bob cannot revoke Alice's; the owner of A can.
    assert!(matches!(
        revert::<E, _>(
            send(as_bob.revokeContribution(batch_a, (&other).into(), proof(&other), "x".into()))
                .await
        ),
        E::NotContributorOrOwner(_)
    ));
    send(reg.revokeContribution(batch_a, (&other).into(), proof(&other), "spam".into()))
        .await
        .unwrap();
    assert!(reg.revoked(other.id()).call().await.unwrap());
}

/// Two senders race to anchor the same batch and both transactions land in one block: the
/// loser's receipt only says "reverted", and `send` recovers the contract's own error so
/// callers can tell "someone else already did it" from a real failure.
#[tokio::test]
async fn a_transaction_that_lost_a_race_reports_the_contracts_error() {
    use alloy::providers::Provider;
    let env = env().await;
    let reg = env.chain.datanet_registry();
    send(reg.createDatanet("d".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    let p = env.chain.provider();
    let nonce = p.get_transaction_count(env.chain.signer()).await.unwrap();
    let anchor = |n: u64| {
        reg.anchorBatch(
            U256::from(1),
            BatchManifest::batch_id_at(1, B256::repeat_byte(1)),
            B256::repeat_byte(1),
            U256::from(1),
            "".into(),
            B256::ZERO,
            1,
        )
        .nonce(n)
        .gas(1_000_000) // no estimate: both must reach the mempool
    };
    let _: serde_json::Value = p
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let (first, second) = (send(anchor(nonce)), send(anchor(nonce + 1)));
    // Mined once both are in the mempool (the pending nonce counts them), however long that
    // takes on a busy machine.
    let mine = async {
        while p
            .get_transaction_count(env.chain.signer())
            .pending()
            .await
            .unwrap()
            < nonce + 2
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    };
    let (first, second, ()) = tokio::join!(first, second, mine);
    first.expect("the first anchor wins");
    assert!(matches!(revert::<E, _>(second), E::BatchAlreadyAnchored(_)));
}
