// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessRoles} from "./AccessRoles.sol";
import {MerkleProof} from "./MerkleProof.sol";
import {RewardToken} from "./RewardToken.sol";

/// @title RewardDistributor
/// @notice Per-epoch reward allocations as Merkle roots over (account, amount) leaves in
/// OpenZeppelin StandardMerkleTree form; contributors claim with a proof.
contract RewardDistributor is AccessRoles {
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");

    struct Epoch {
        bytes32 merkleRoot;
        uint256 total;
        uint256 claimed;
    }

    RewardToken public immutable token;
    mapping(uint256 epoch => Epoch) public epochs;
    mapping(uint256 epoch => mapping(address account => bool)) public hasClaimed;

    event EpochAllocated(uint256 indexed epoch, bytes32 merkleRoot, uint256 total);
    event Claimed(uint256 indexed epoch, address indexed account, uint256 amount);

    error EpochExists(uint256 epoch);
    error UnknownEpoch(uint256 epoch);
    error AlreadyClaimed(uint256 epoch, address account);
    error InvalidProof();
    error ExceedsEpochTotal(uint256 epoch);
    error EmptyRoot();

    constructor(address admin, RewardToken token_) AccessRoles(admin) {
        token = token_;
        _grant(DISTRIBUTOR_ROLE, admin);
    }

    /// @notice Allocates an epoch: mints `total` to this contract for later claims.
    /// A zero root is refused: it would mint `total` for claims nobody can prove, and leave
    /// the epoch open to be allocated (and minted) again.
    function allocateEpoch(uint256 epoch, bytes32 merkleRoot, uint256 total) external onlyRole(DISTRIBUTOR_ROLE) {
        if (merkleRoot == bytes32(0)) revert EmptyRoot();
        if (epochs[epoch].merkleRoot != bytes32(0)) revert EpochExists(epoch);
        epochs[epoch] = Epoch({merkleRoot: merkleRoot, total: total, claimed: 0});
        token.mint(address(this), total);
        emit EpochAllocated(epoch, merkleRoot, total);
    }

    /// @notice Pays `amount` to `account` for `epoch` when the proof holds. Anyone may submit.
    function claim(uint256 epoch, address account, uint256 amount, bytes32[] calldata proof) external {
        Epoch storage e = epochs[epoch];
        if (e.merkleRoot == bytes32(0)) revert UnknownEpoch(epoch);
        if (hasClaimed[epoch][account]) revert AlreadyClaimed(epoch, account);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
        if (!MerkleProof.verify(proof, e.merkleRoot, leaf)) revert InvalidProof();
        if (e.claimed + amount > e.total) revert ExceedsEpochTotal(epoch);
        hasClaimed[epoch][account] = true;
        e.claimed += amount;
        token.transfer(account, amount);
        emit Claimed(epoch, account, amount);
    }
}
