use alloy::primitives::{Address, B256, U256, keccak256};
use tributary_chain::bindings::RewardDistributor::{self, RewardDistributorErrors as E};
use tributary_chain::bindings::RewardToken::{self, RewardTokenErrors as TE};
use tributary_chain::send;
use tributary_schemas::merkle::{MerkleTree, leaf_account_amount};

use crate::common::{ALICE, BOB, env, event, revert};

#[tokio::test]
async fn epochs_pay_claims_with_proofs_once_and_refuse_forgeries() {
    let env = env().await;
    let dist = env.chain.reward_distributor();
    let token = env.chain.reward_token();
    let (alice_p, alice) = env.as_key(ALICE);
    let as_alice = RewardDistributor::new(*dist.address(), alice_p.clone());

    let payees: Vec<(Address, U256)> = (1u8..=5)
        .map(|i| (Address::repeat_byte(i), U256::from(1000u64 * i as u64)))
        .chain([(alice, U256::from(7u64))])
        .collect();
    let total: U256 = payees.iter().map(|(_, a)| *a).sum();
    let tree = MerkleTree::new(
        payees
            .iter()
            .map(|(a, v)| leaf_account_amount(*a, *v))
            .collect(),
    );

    let role = dist.DISTRIBUTOR_ROLE().call().await.unwrap();
    match revert::<E, _>(send(as_alice.allocateEpoch(U256::from(1), tree.root(), total)).await) {
        E::MissingRole(e) => assert_eq!((e.role, e.account), (role, alice)),
        other => panic!("{other:?}"),
    }
    // A zero root: tokens minted for claims nobody could prove, and the epoch left open.
    assert!(matches!(
        revert::<E, _>(send(dist.allocateEpoch(U256::from(1), B256::ZERO, total)).await),
        E::EmptyRoot(_)
    ));
    let r = send(dist.allocateEpoch(U256::from(1), tree.root(), total))
        .await
        .unwrap();
    let ev: RewardDistributor::EpochAllocated = event(&r);
    assert_eq!(
        (ev.epoch, ev.merkleRoot, ev.total),
        (U256::from(1), tree.root(), total)
    );
    assert_eq!(
        token.balanceOf(*dist.address()).call().await.unwrap(),
        total
    );
    assert!(matches!(
        revert::<E, _>(send(dist.allocateEpoch(U256::from(1), tree.root(), total)).await),
        E::EpochExists(_)
    ));

    // A forged account (someone else's proof) and a forged proof.
    let stranger = Address::repeat_byte(0x99);
    let (b, w) = payees[1];
    let proof_b = tree.proof(&leaf_account_amount(b, w)).unwrap();
    let forged_account = dist.claim(U256::from(1), stranger, w, proof_b.clone());
    assert!(matches!(
        revert::<E, _>(send(forged_account).await),
        E::InvalidProof(_)
    ));
    let mut forged = proof_b;
    forged[0] = keccak256(forged[0]);
    assert!(matches!(
        revert::<E, _>(send(dist.claim(U256::from(1), b, w, forged)).await),
        E::InvalidProof(_)
    ));

    // Anyone may submit a claim; the tokens go to the account in the leaf.
    for (account, amount) in &payees {
        let proof = tree.proof(&leaf_account_amount(*account, *amount)).unwrap();
        let r = send(as_alice.claim(U256::from(1), *account, *amount, proof))
            .await
            .unwrap();
        let ev: RewardDistributor::Claimed = event(&r);
        assert_eq!(
            (ev.epoch, ev.account, ev.amount),
            (U256::from(1), *account, *amount)
        );
        assert_eq!(token.balanceOf(*account).call().await.unwrap(), *amount);
    }
    assert_eq!(
        token.balanceOf(*dist.address()).call().await.unwrap(),
        U256::ZERO
    );

    let (a, v) = payees[0];
    let proof = tree.proof(&leaf_account_amount(a, v)).unwrap();
    match revert::<E, _>(send(dist.claim(U256::from(1), a, v, proof.clone())).await) {
        E::AlreadyClaimed(e) => assert_eq!((e.epoch, e.account), (U256::from(1), a)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        revert::<E, _>(send(dist.claim(U256::from(2), a, v, proof)).await),
        E::UnknownEpoch(_)
    ));

    // The token: only the distributor mints; balances are enforced.
    let as_alice_token = RewardToken::new(*token.address(), alice_p);
    let minter = token.MINTER_ROLE().call().await.unwrap();
    match revert::<TE, _>(send(as_alice_token.mint(alice, U256::from(1))).await) {
        TE::MissingRole(e) => assert_eq!((e.role, e.account), (minter, alice)),
        other => panic!("{other:?}"),
    }
    // Nor does anyone but the admin grant or revoke the minter role.
    let admin = token.ADMIN_ROLE().call().await.unwrap();
    for refused in [
        send(as_alice_token.grantRole(minter, alice)).await,
        send(as_alice_token.revokeRole(minter, *dist.address())).await,
    ] {
        match revert::<TE, _>(refused) {
            TE::MissingRole(e) => assert_eq!((e.role, e.account), (admin, alice)),
            other => panic!("{other:?}"),
        }
    }
    // Another account moves Alice's tokens only within what she approved.
    let (bob_p, bob) = env.as_key(BOB);
    let as_bob_token = RewardToken::new(*token.address(), bob_p);
    match revert::<TE, _>(send(as_bob_token.transferFrom(alice, bob, U256::from(1))).await) {
        TE::InsufficientAllowance(e) => {
            assert_eq!(
                (e.spender, e.allowance, e.needed),
                (bob, U256::ZERO, U256::from(1))
            )
        }
        other => panic!("{other:?}"),
    }
    send(as_alice_token.approve(bob, U256::from(1)))
        .await
        .unwrap();
    assert!(matches!(
        revert::<TE, _>(send(as_bob_token.transferFrom(alice, bob, U256::from(2))).await),
        TE::InsufficientAllowance(_)
    ));
    send(as_bob_token.transferFrom(alice, bob, U256::from(1)))
        .await
        .unwrap();
    assert_eq!(
        token.allowance(alice, bob).call().await.unwrap(),
        U256::ZERO
    );
    assert_eq!(token.balanceOf(bob).call().await.unwrap(), U256::from(1));
    assert!(matches!(
        revert::<TE, _>(send(as_alice_token.transfer(stranger, U256::from(7))).await),
        TE::InsufficientBalance(_)
    ));
    let r = send(as_alice_token.transfer(stranger, U256::from(6)))
        .await
        .unwrap();
    let ev: RewardToken::Transfer = event(&r);
    assert_eq!((ev.from, ev.to, ev.value), (alice, stranger, U256::from(6)));
}
