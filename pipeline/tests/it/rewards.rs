//! Rewards: the allocation invariants by property test, and claims on anvil.

use std::collections::HashSet;

use alloy::primitives::{Address, B256, U256};
use proptest::prelude::*;
use tributary_pipeline::rewards::{
    Accounts, EpochManifest, Paid, Policy, Role, allocate, claim, epochs, publish, record_foreign,
    settle, totals, tree,
};

use crate::common::{Env, Start, env};

const PLATFORM: Address = Address::repeat_byte(0xAA);
const STAKERS: Address = Address::repeat_byte(0xBB);

fn accounts() -> Accounts {
    Accounts {
        platform: PLATFORM,
        stakers: STAKERS,
    }
}

fn contribution(i: u8) -> B256 {
    B256::repeat_byte(i)
}

fn contributor(i: u8) -> Address {
    Address::repeat_byte(i % 5 + 1)
}

fn paid_strategy() -> impl Strategy<Value = Vec<Paid>> {
    let answer = (
        0u8..3,
        1u8..4,
        // Everyday fees, and fees so large that a fee times 10^13 overflows u128 (up to the
        // most an epoch of 11 answers may total).
        prop_oneof![
            0u128..10_000_000_000_000_000_000,
            0u128..tributary_schemas::tables::MAX_AMOUNT / 11,
        ],
        proptest::collection::vec((10u8..40, -1.0f64..1.0), 0..6),
    )
        .prop_map(|(adapter, owner, fee, shares)| Paid {
            adapter: B256::repeat_byte(0xF0 + adapter),
            owner: Address::repeat_byte(0xC0 + owner),
            fee,
            shares: shares
                .into_iter()
                .map(|(c, s)| (contribution(c), contributor(c), s))
                .collect(),
        });
    proptest::collection::vec(answer, 1..12)
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (0u32..=10_000, 0u32..=10_000, 0u32..=10_000).prop_map(|(a, b, c)| {
        let mut v = [a, b, c];
        v.sort();
        Policy {
            platform: v[0],
            owner: v[1] - v[0],
            stakers: v[2] - v[1],
            contributors: 10_000 - v[2],
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn allocations_sum_exactly_to_the_pool_in_any_order(
        paid in paid_strategy(),
        policy in policy_strategy(),
        revoked in proptest::collection::hash_set(10u8..40, 0..4),
        seed in any::<u64>(),
    ) {
        let revoked: HashSet<B256> = revoked.into_iter().map(contribution).collect();
        let rows = allocate(&policy, &accounts(), &paid, &revoked);
        let pool: u128 = paid.iter().map(|p| p.fee).sum();
        prop_assert_eq!(rows.iter().map(|r| r.amount).sum::<u128>(), pool);
        prop_assert_eq!(totals(&rows).values().sum::<u128>(), pool);

        // Any order of the answers gives the same rows.
        let mut shuffled = paid.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(allocate(&policy, &accounts(), &shuffled, &revoked), rows.clone());

        // Only contributions with a positive share in some answer, and not revoked, are paid.
        let positive: HashSet<B256> = paid
            .iter()
            .flat_map(|p| p.shares.iter().filter(|s| s.2 > 0.0).map(|s| s.0))
            .collect();
        for r in rows.iter().filter(|r| r.role == Role::Contributor) {
            let c = r.contribution.unwrap();
            prop_assert!(positive.contains(&c), "{c} had no positive share but was paid");
            prop_assert!(!revoked.contains(&c), "{c} was revoked but was paid");
        }
    }
}

#[test]
fn policy_parses_percentages_and_refuses_bad_ones() {
    let p: Policy = "platform=10,owner=20,stakers=20,contributors=50"
        .parse()
        .unwrap();
    assert_eq!(p, Policy::default());
    let p: Policy = "platform=12.5,owner=12.5,stakers=0,contributors=75"
        .parse()
        .unwrap();
    assert_eq!((p.platform, p.contributors), (1_250, 7_500));
    for (bad, says) in [
        (
            "platform=10,owner=20,stakers=20,contributors=40",
            "sum to 90%",
        ),
        (
            "platform=10,owners=20,stakers=20,contributors=50",
            "unknown policy part \"owners\"",
        ),
        ("platform=ten", "not a percentage"),
        (
            "platform=10.001,owner=20,stakers=20,contributors=49.999",
            "two decimals",
        ),
    ] {
        let err = bad.parse::<Policy>().unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn splits_one_answer_by_policy_and_share() {
    let c1 = (contribution(1), Address::repeat_byte(1), 0.75);
    let c2 = (contribution(2), Address::repeat_byte(2), 0.25);
    let neg = (contribution(3), Address::repeat_byte(3), -0.5);
    let paid = vec![Paid {
        adapter: B256::repeat_byte(0xF0),
        owner: Address::repeat_byte(0xC0),
        fee: 1_000,
        shares: vec![c1, c2, neg],
    }];
    let rows = allocate(&Policy::default(), &accounts(), &paid, &HashSet::new());
    let t = totals(&rows);
    assert_eq!(t[&PLATFORM], 100);
    assert_eq!(t[&Address::repeat_byte(0xC0)], 200);
    assert_eq!(t[&STAKERS], 200);
    assert_eq!(t[&Address::repeat_byte(1)], 375);
    assert_eq!(t[&Address::repeat_byte(2)], 125);
    assert!(
        !t.contains_key(&Address::repeat_byte(3)),
        "a negative share earns nothing"
    );

    // Revoking c2 gives its part to c1; revoking both sends the contributors' part to the
    // platform, with a reason that says so.
    let rows = allocate(
        &Policy::default(),
        &accounts(),
        &paid,
        &HashSet::from([contribution(2)]),
    );
    assert_eq!(totals(&rows)[&Address::repeat_byte(1)], 500);
    let rows = allocate(
        &Policy::default(),
        &accounts(),
        &paid,
        &HashSet::from([contribution(1), contribution(2)]),
    );
    assert_eq!(totals(&rows)[&PLATFORM], 600);
    assert!(
        rows.iter()
            .any(|r| r.reason.contains("credited no live contribution"))
    );

    // A contribution whose contributor is unknown here, and an adapter without a known
    // owner: their parts are the platform's, never the zero address's (which cannot claim).
    let unknown = vec![Paid {
        owner: Address::ZERO,
        shares: vec![c1, (contribution(2), Address::ZERO, 0.25)],
        ..paid[0].clone()
    }];
    let rows = allocate(&Policy::default(), &accounts(), &unknown, &HashSet::new());
    let t = totals(&rows);
    assert!(!t.contains_key(&Address::ZERO), "{rows:?}");
    assert_eq!(t[&PLATFORM], 100 + 200 + 125);
    assert_eq!(t[&Address::repeat_byte(1)], 375);

    // Thirds of 100 units: 33 + 33 + 34 (the remainder goes by largest remainder, then
    // account order), the same every time.
    let thirds = vec![Paid {
        adapter: B256::repeat_byte(0xF0),
        owner: Address::repeat_byte(0xC0),
        fee: 100,
        shares: (1..=3)
            .map(|i| (contribution(i), Address::repeat_byte(i), 1.0))
            .collect(),
    }];
    let policy: Policy = "platform=0,owner=0,stakers=0,contributors=100"
        .parse()
        .unwrap();
    let t = totals(&allocate(&policy, &accounts(), &thirds, &HashSet::new()));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![34, 33, 33]);

    // The credit past an answer's listed contributions, summed per contributor under
    // contribution zero, is paid to each of those contributors, in its own row (no
    // contribution named).
    let tail = vec![Paid {
        adapter: B256::repeat_byte(0xF0),
        owner: Address::repeat_byte(0xC0),
        fee: 1_000,
        shares: vec![
            (contribution(1), Address::repeat_byte(1), 0.5),
            (B256::ZERO, Address::repeat_byte(1), 0.1),
            (B256::ZERO, Address::repeat_byte(4), 0.3),
            (B256::ZERO, Address::repeat_byte(5), 0.1),
        ],
    }];
    let rows = allocate(
        &policy,
        &accounts(),
        &tail,
        &HashSet::from([contribution(2)]),
    );
    let t = totals(&rows);
    assert_eq!(
        [1, 4, 5].map(|i| t[&Address::repeat_byte(i)]),
        [600, 300, 100]
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.account == Address::repeat_byte(4))
            .map(|r| r.contribution)
            .collect::<Vec<_>>(),
        vec![None]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_pay_out_once_and_forged_proofs_revert() {
    let Env {
        dir, chain, lake, ..
    } = env(Start::Bare).await;
    let alice = Address::repeat_byte(0x11);
    let bob = Address::repeat_byte(0x22);
    let paid = vec![Paid {
        adapter: B256::repeat_byte(0xF0),
        owner: Address::repeat_byte(0xC0),
        fee: 1_000_000,
        shares: vec![(contribution(1), alice, 0.6), (contribution(2), bob, 0.4)],
    }];
    let rows = allocate(&Policy::default(), &accounts(), &paid, &HashSet::new());
    let m = EpochManifest {
        epoch: 1,
        policy: Policy::default(),
        accounts: accounts(),
        batches: vec![],
        pool: "1000000".into(),
        root: tree(&totals(&rows)).root(),
        allocations: rows,
        foreign: false,
    };
    lake.put(&EpochManifest::key(1), serde_json::to_vec(&m).unwrap())
        .await
        .unwrap();
    let settled = publish(&chain, &lake, m.clone()).await.unwrap();
    assert!(settled.tx.is_some());
    // Publishing again (a rerun after a crash) is a no-op.
    assert!(
        publish(&chain, &lake, m.clone())
            .await
            .unwrap()
            .tx
            .is_none()
    );

    let token = chain.reward_token();
    let first = claim(&chain, &lake, 1, alice).await.unwrap();
    assert_eq!((first.amount, first.newly_claimed), (300_000, true));
    assert_eq!(
        token.balanceOf(alice).call().await.unwrap(),
        U256::from(300_000)
    );
    // Claiming again (a rerun of a claim that died before reporting) pays nothing and
    // reports the claim made.
    let again = claim(&chain, &lake, 1, alice).await.unwrap();
    assert_eq!(
        again,
        tributary_pipeline::rewards::Claimed {
            newly_claimed: false,
            ..first
        }
    );
    assert_eq!(
        token.balanceOf(alice).call().await.unwrap(),
        U256::from(300_000)
    );

    // Bob's proof with a larger amount, and Alice's proof for Bob, both revert.
    let (bob_amount, bob_proof) = m.claim(bob).unwrap();
    let (_, alice_proof) = m.claim(alice).unwrap();
    let distributor = chain.reward_distributor();
    for (amount, proof) in [
        (bob_amount + 1, bob_proof.clone()),
        (bob_amount, alice_proof),
    ] {
        let err =
            tributary_chain::send(distributor.claim(U256::from(1), bob, U256::from(amount), proof))
                .await
                .unwrap_err();
        assert!(
            matches!(
                err.revert::<tributary_chain::bindings::RewardDistributor::RewardDistributorErrors>(),
                Some(tributary_chain::bindings::RewardDistributor::RewardDistributorErrors::InvalidProof(_))
            ),
            "{err}"
        );
    }
    assert_eq!(token.balanceOf(bob).call().await.unwrap(), U256::ZERO);
    // Bob claims from his wallet, straight to the contract; `claim` then finds his claim.
    let sent = tributary_chain::send(distributor.claim(
        U256::from(1),
        bob,
        U256::from(bob_amount),
        bob_proof,
    ))
    .await
    .unwrap();
    assert_eq!(
        token.balanceOf(bob).call().await.unwrap(),
        U256::from(bob_amount)
    );
    let found = claim(&chain, &lake, 1, bob).await.unwrap();
    assert_eq!(
        (found.amount, found.tx, found.newly_claimed),
        (bob_amount, sent.transaction_hash, false)
    );
    let err = claim(&chain, &lake, 1, Address::repeat_byte(0x99))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to claim"), "{err}");

    // A settled epoch's manifest that cannot be read (a symlink loop here, as an I/O error
    // would be) is an error, not an epoch never settled: settling would write epoch 1 anew
    // over the manifest Bob's and Alice's claims were proven against.
    let file = dir.path().join("lake").join(EpochManifest::key(1));
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&file, &file).unwrap();
    let err = epochs(&lake).await.unwrap_err().to_string();
    assert!(err.contains("could not be read"), "{err}");
    let err = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not be read"), "{err}");
    assert!(
        std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_symlink(),
        "left as it was"
    );
}

/// The accounts an epoch pays the model owner's part to.
fn owners(m: &EpochManifest) -> Vec<Address> {
    m.allocations
        .iter()
        .filter(|a| a.role == Role::ModelOwner)
        .map(|a| a.account)
        .collect()
}

/// Answer `i` of adapter 0xad…, with `fee`.
fn answer(i: u8, fee: u128) -> tributary_schemas::manifest::InferenceEntry {
    tributary_schemas::manifest::InferenceEntry {
        adapter_id: B256::repeat_byte(0xad),
        request_hash: B256::repeat_byte(i),
        response_hash: B256::repeat_byte(i ^ 0x80),
        attribution_root: B256::ZERO,
        tokens: 4,
        fee,
        attribution: vec![],
        nonce: B256::ZERO,
    }
}

/// A batch id another recorder took first, with other contents (sent straight to the ledger),
/// is refused by name: those answers would never settle under it. Before, the "already
/// recorded" revert was taken as this batch's own earlier attempt. A batch recorded again by
/// its own retry still passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_id_another_recorder_took_with_other_contents_is_refused() {
    use tributary_pipeline::inferences::{batch_id, record};
    let Env {
        dir: _dir,
        chain,
        lake,
        ..
    } = env(Start::Bare).await;
    let answers = [answer(1, 1000)];
    let id = batch_id(&answers);
    tributary_chain::send(chain.inference_ledger().recordInferences(
        id,
        vec![answers[0].adapter_id],
        B256::repeat_byte(9),
        U256::from(1),
        "elsewhere".into(),
    ))
    .await
    .unwrap();
    let err = record(&chain, &lake, &answers)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other contents") && err.contains("Merkle root differs"),
        "{err}"
    );
    let other = [answer(2, 1000)];
    assert_eq!(
        record(&chain, &lake, &other).await.unwrap(),
        batch_id(&other)
    );
    assert_eq!(
        record(&chain, &lake, &other).await.unwrap(),
        batch_id(&other),
        "a retry of the same batch"
    );
}

/// An answer is paid once, whichever batches list it. The ledger refuses a batch id twice,
/// not an answer listed again under another id (a recorder that regrouped its journal after
/// a crash, or another recorder): before, such an answer was paid with each batch.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_listed_by_two_batches_is_paid_once() {
    use tributary_pipeline::inferences::record;
    let Env {
        dir: _dir,
        chain,
        lake,
        ..
    } = env(Start::Bare).await;
    // Answers as serving records them now: each with a nonce of its own.
    let fresh = |i: u8, fee: u128| tributary_schemas::manifest::InferenceEntry {
        nonce: B256::repeat_byte(i),
        ..answer(i, fee)
    };
    let first = record(&chain, &lake, &[fresh(1, 1000)]).await.unwrap();
    let one = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!(one.pool, 1000);
    assert!(one.repeated.is_empty());

    // Answer 1 again (settled in epoch 1), and answer 2 in two new batches.
    let again = record(&chain, &lake, &[fresh(1, 1000), fresh(2, 500)])
        .await
        .unwrap();
    let third = record(&chain, &lake, &[fresh(2, 500), fresh(3, 300)])
        .await
        .unwrap();
    // Two identical answers recorded before answers had a nonce share one id: both are paid,
    // as they were before.
    let legacy = record(&chain, &lake, &[answer(4, 70), answer(4, 70)])
        .await
        .unwrap();
    let two = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!((two.manifest.epoch, two.pool), (2, 940));
    let mut listed = two.manifest.batches.clone();
    listed.sort();
    let mut want = vec![again, third, legacy];
    want.sort();
    assert_eq!(listed, want, "every batch is settled");
    let repeated: Vec<(B256, B256, B256)> = two
        .repeated
        .iter()
        .map(|r| (r.answer, r.batch, r.paid_in))
        .collect();
    assert_eq!(
        repeated,
        vec![
            (fresh(1, 1000).id(), again, first),
            (fresh(2, 500).id(), third, again)
        ]
    );
    let paid: u128 = two.manifest.allocations.iter().map(|a| a.amount).sum();
    assert_eq!(paid, 940);
    assert!(two.unread.is_empty());
}

/// An epoch posted straight to the distributor by someone else (an airdrop from the admin's
/// wallet) stops settling, as an epoch whose manifest was lost does, and the error names the
/// way on: recorded as foreign, settling goes on with the next number and pays the batches
/// recorded meanwhile; the foreign epoch's claims are not Tributary's. Only a signer that may
/// post epochs may record it, only the next epoch, and only one that is posted. Before, the
/// only way on was a new distributor.
#[tokio::test(flavor = "multi_thread")]
async fn an_epoch_someone_else_posted_is_recorded_as_foreign_and_settling_goes_on() {
    use tributary_pipeline::inferences::record;
    let env = env(Start::Bare).await;
    let (chain, lake) = (&env.chain, &env.lake);
    record(chain, lake, &[answer(1, 1000)]).await.unwrap();
    let e = record_foreign(chain, lake, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not posted on chain"), "{e}");

    // The airdrop, from the admin's wallet.
    let airdrop = B256::repeat_byte(0xa1);
    tributary_chain::send(chain.reward_distributor().allocateEpoch(
        U256::from(1),
        airdrop,
        U256::from(5000),
    ))
    .await
    .unwrap();
    let e = settle(chain, lake, Policy::default(), accounts())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--foreign-epoch 1"), "{e}");
    for (n, says) in [(2, "not the next one"), (0, "not the next one")] {
        let e = record_foreign(chain, lake, n)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
    let alice = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .unwrap();
    let e = record_foreign(&env.as_signer(alice).await, lake, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("may not record") && e.contains("DISTRIBUTOR_ROLE"),
        "{e}"
    );
    assert!(epochs(lake).await.unwrap().is_empty(), "nothing written");

    let foreign = record_foreign(chain, lake, 1).await.unwrap();
    assert!(foreign.foreign && foreign.allocations.is_empty());
    assert_eq!((foreign.root, foreign.pool.as_str()), (airdrop, "5000"));
    // Run again (its settle stopped, say): the same record.
    assert_eq!(record_foreign(chain, lake, 1).await.unwrap(), foreign);
    let two = settle(chain, lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!((two.manifest.epoch, two.pool), (2, 1000));
    assert!(two.tx.is_some() && !two.manifest.foreign);
    let e = claim(chain, lake, 1, PLATFORM)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("someone else"), "{e}");
    claim(chain, lake, 2, PLATFORM).await.unwrap();
    // Tributary's own epoch with its manifest lost is never taken for someone else's: its
    // allocation rows say it was settled here.
    let file = env.dir.path().join("lake").join(EpochManifest::key(2));
    let kept = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let e = record_foreign(chain, lake, 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("settled by Tributary") && e.contains("restore"),
        "{e}"
    );
    std::fs::write(&file, kept).unwrap();
    // Settling again goes past both.
    record(chain, lake, &[answer(2, 500)]).await.unwrap();
    let three = settle(chain, lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!((three.manifest.epoch, three.pool), (3, 500));
}

/// Answers served without a fee settle nothing (the distributor refuses an epoch with
/// nothing to claim): an error that says so, and nothing written; they are settled with the
/// next answers that pay.
#[tokio::test(flavor = "multi_thread")]
async fn answers_without_fees_wait_for_an_epoch_that_pays() {
    let Env {
        dir: _dir,
        chain,
        lake,
        ..
    } = env(Start::Bare).await;
    let free = [answer(1, 0), answer(2, 0)];
    tributary_pipeline::inferences::record(&chain, &lake, &free)
        .await
        .unwrap();
    let err = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pay no fees"), "{err}");
    assert!(epochs(&lake).await.unwrap().is_empty(), "nothing written");

    tributary_pipeline::inferences::record(&chain, &lake, &[answer(3, 1000)])
        .await
        .unwrap();
    let settled = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!(
        (
            settled.manifest.epoch,
            settled.pool,
            settled.manifest.batches.len()
        ),
        (1, 1000, 2)
    );
    assert!(settled.tx.is_some());
}

/// An epoch the chain holds is never settled again: with its manifest missing from the lake
/// (a lake restored from a backup older than the epoch, or a copy), settling is refused and
/// nothing is written (before, epoch 1 was written anew over the posted one, its claims' proofs
/// no longer matched the root on chain, and its new batches counted as paid). A manifest whose
/// root is not the posted one is refused by `publish` too.
#[tokio::test(flavor = "multi_thread")]
async fn an_epoch_the_chain_holds_is_never_settled_again() {
    let Env {
        dir, chain, lake, ..
    } = env(Start::Bare).await;
    tributary_pipeline::inferences::record(&chain, &lake, &[answer(1, 1000)])
        .await
        .unwrap();
    let first = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    tributary_pipeline::inferences::record(&chain, &lake, &[answer(2, 500)])
        .await
        .unwrap();
    // Adapter 0xad… was never published here: its owner's part is the platform's, never the
    // zero address's (which could not claim it).
    let owners = owners(&first.manifest);
    assert_eq!(owners, [PLATFORM]);
    let file = dir.path().join("lake").join(EpochManifest::key(1));
    std::fs::remove_file(&file).unwrap();
    let err = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("epoch 1 is settled on chain") && err.contains("restore"),
        "{err}"
    );
    assert!(!file.exists(), "nothing written");

    let mut other = first.manifest.clone();
    other.root = B256::repeat_byte(0x77);
    let err = publish(&chain, &lake, other.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("posted with root"), "{err}");
    // The same manifest in the lake (another lake's, settled concurrently): settling stops at
    // it instead of going on to epoch 2 as if epoch 1 were this one.
    std::fs::write(&file, serde_json::to_vec(&other).unwrap()).unwrap();
    let err = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("posted with root"), "{err}");
}

/// Settlement pays what the chain recorded, whatever else the lake's `inferences` rows say:
/// rows appended twice (another engine copying them, or a retry that lost its transaction
/// id) are paid once, and a batch whose manifest differs from the chain's root (a fee
/// raised) or from an answer's attribution root (credit redirected) is left unsettled and
/// named, then paid once its manifest is restored. Before, every row of a recorded batch was
/// paid: twice for rows appended twice, and as altered.
#[tokio::test(flavor = "multi_thread")]
async fn settlement_pays_what_the_chain_recorded_not_the_rows() {
    use tributary_schemas::manifest::{AttributionShare, InferenceManifest};
    use tributary_schemas::tables::names;
    let Env {
        dir, chain, lake, ..
    } = env(Start::Bare).await;
    let record = |entries: Vec<tributary_schemas::manifest::InferenceEntry>| {
        let (chain, lake) = (&chain, &lake);
        async move {
            tributary_pipeline::inferences::record(chain, lake, &entries)
                .await
                .unwrap()
        }
    };
    let a = record(vec![answer(1, 1000)]).await;
    let b = record(vec![answer(2, 500)]).await;
    let mut credited = answer(3, 300);
    credited.attribution = vec![AttributionShare {
        contribution: B256::repeat_byte(0xc1),
        share: 1.0,
        contributor: None,
        datanet_id: None,
        score: None,
    }];
    credited.attribution_root = AttributionShare::root(&credited.attribution);
    let c = record(vec![credited]).await;

    // Every row again, as another engine would append them.
    let rows = lake.read(names::INFERENCES, None).await.unwrap();
    lake.append(names::INFERENCES)
        .batches(rows)
        .commit()
        .await
        .unwrap();
    // b's fee raised, c's credit redirected, in their manifests.
    let path = |id: B256| dir.path().join("lake").join(InferenceManifest::key(id));
    let original_b = std::fs::read(path(b)).unwrap();
    let original_c = std::fs::read(path(c)).unwrap();
    let alter = |id: B256, f: &dyn Fn(&mut InferenceManifest)| {
        let mut m: InferenceManifest =
            serde_json::from_slice(&std::fs::read(path(id)).unwrap()).unwrap();
        f(&mut m);
        std::fs::write(path(id), m.to_bytes()).unwrap();
    };
    alter(b, &|m| m.inferences[0].fee = 1_000_000);
    alter(c, &|m| {
        m.inferences[0].attribution[0].contribution = B256::repeat_byte(0xc2);
    });

    let first = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    assert_eq!((first.pool, &first.manifest.batches[..]), (1000, &[a][..]));
    let mut left: Vec<(B256, String)> = first.unverified.clone();
    left.sort();
    let mut expected = vec![
        (b, "Merkle root differs from the chain"),
        (c, "listed credit differs from the attribution root"),
    ];
    expected.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    for ((batch, why), (want, says)) in left.iter().zip(&expected) {
        assert_eq!(batch, want);
        assert!(why.contains(says), "{why}");
    }

    // Restored, they are paid with the next epoch, once.
    std::fs::write(path(b), original_b).unwrap();
    std::fs::write(path(c), original_c).unwrap();
    let second = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    let mut paid = second.manifest.batches.clone();
    paid.sort();
    let mut want = vec![b, c];
    want.sort();
    assert_eq!((second.manifest.epoch, second.pool, paid), (2, 800, want));
    assert!(second.unverified.is_empty());
}

/// Settle runs at once on one lake, with different policies, settle one epoch: the first to
/// write epoch 1's manifest holds it (a conditional put), the others finish that epoch
/// instead of overwriting it, so the manifest in the lake is the one whose root the chain
/// holds and every claim proves against it. Before, a loser's manifest could replace the
/// winner's after the winner posted its root.
#[tokio::test(flavor = "multi_thread")]
async fn settle_runs_at_once_settle_one_epoch() {
    let Env { chain, lake, .. } = env(Start::Bare).await;
    tributary_pipeline::inferences::record(&chain, &lake, &[answer(1, 1000), answer(2, 700)])
        .await
        .unwrap();
    // The stakers' part differs, so each run's epoch has another root.
    let policy = |stakers: u32| Policy {
        platform: 1000,
        owner: 2000,
        stakers,
        contributors: 7000 - stakers,
    };
    let runs = futures::future::join_all(
        [1000, 2000, 3000, 4000, 5000, 6000].map(|p| settle(&chain, &lake, policy(p), accounts())),
    )
    .await;
    let settled = epochs(&lake).await.unwrap();
    assert_eq!(settled.len(), 1);
    let posted = chain
        .reward_distributor()
        .epochs(U256::from(1))
        .call()
        .await
        .unwrap()
        .merkleRoot;
    assert_eq!(
        settled[0].root, posted,
        "the lake's epoch 1 is the one posted"
    );
    for run in runs {
        match run {
            Ok(s) => assert_eq!((s.manifest.epoch, s.manifest.root), (1, posted)),
            // Started once epoch 1 was settled: nothing left for epoch 2.
            Err(e) => assert!(e.to_string().contains("no inference batch"), "{e}"),
        }
    }
    // The platform's claim proves against the root on chain.
    let paid = claim(&chain, &lake, 1, PLATFORM).await.unwrap();
    assert!(paid.newly_claimed && paid.amount > 0);
}

alloy::sol!(
    #[sol(rpc)]
    Relay,
    "../contracts/out/Relay.json"
);

/// The model owner's part goes to the account that published the adapter as the registry
/// records it (`publisherOf`): a contract account holding the publisher role (a Safe, a
/// forwarder, an ERC-4337 account) is paid, not the key that sent its transaction (which,
/// for a Safe's executor or a bundler, is somebody else). Before, the transaction's sender
/// was paid. A registry deployed before it recorded publishers answers `None`, and the
/// sender is paid as before.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_paid_is_the_contract_account_that_published() {
    use alloy::sol_types::SolCall;
    use tributary_chain::bindings::ModelRegistry;
    use tributary_chain::{Chain, ChainConfig, send};

    let Env {
        dir, chain, lake, ..
    } = env(Start::Bare).await;
    let relay = Relay::new(
        send(Relay::deploy_builder(
            chain.provider().clone(),
            chain.signer(),
        ))
        .await
        .unwrap()
        .contract_address
        .unwrap(),
        chain.provider().clone(),
    );
    let models = chain.model_registry();
    let role = models.PUBLISHER_ROLE().call().await.unwrap();
    send(models.grantRole(role, *relay.address()))
        .await
        .unwrap();
    let base = B256::repeat_byte(0xba);
    send(models.registerBaseModel(base, B256::ZERO, "gpt2".into(), String::new()))
        .await
        .unwrap();
    // Adapter 0xad…, the one `answer` serves, published through the relay.
    let adapter = B256::repeat_byte(0xad);
    let publish = ModelRegistry::publishAdapterCall {
        id: adapter,
        baseModelId: base,
        parentIds: vec![],
        snapshotId: B256::ZERO,
        configHash: B256::ZERO,
        weightsHash: B256::ZERO,
        uri: "artifacts/adapters/relayed/".into(),
        version: "relayed@1.0.0".into(),
    };
    send(relay.execute(*models.address(), publish.abi_encode().into()))
        .await
        .unwrap();
    assert_eq!(
        chain.publisher_of(adapter).await.unwrap(),
        Some(*relay.address())
    );

    tributary_pipeline::inferences::record(&chain, &lake, &[answer(1, 1000)])
        .await
        .unwrap();
    let settled = settle(&chain, &lake, Policy::default(), accounts())
        .await
        .unwrap();
    let owners = owners(&settled.manifest);
    assert_eq!(owners, [*relay.address()]);

    // A registry without `publisherOf` (here: another contract at its address) says so.
    let mut older = chain.deployment().clone();
    older.model_registry = older.inference_ledger;
    let older = Chain::connect(ChainConfig {
        deployment: Some(older),
        ..ChainConfig::rpc(chain.url().clone(), dir.path().join("older"))
    })
    .await
    .unwrap();
    assert_eq!(older.publisher_of(adapter).await.unwrap(), None);
}
