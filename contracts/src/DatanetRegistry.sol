// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "./MerkleProof.sol";

/// @title DatanetRegistry
/// @notice Datanets (community datasets), the Merkle roots of their contribution batches,
/// validator attestations and revocations. Data lives in the lake; the chain holds hashes.
/// @dev Contribution ids are EIP-712 struct hashes under this contract's domain
/// ("Tributary", "1", chainid, address(this)); a batch root is a Merkle root over them.
contract DatanetRegistry {
    struct Datanet {
        address owner;
        bytes32 schemaHash;
        string name;
    }

    struct Batch {
        uint256 datanetId;
        bytes32 merkleRoot;
        uint256 count;
    }

    /// @notice A contribution as its contributor signed it (EIP-712).
    struct Contribution {
        uint256 datanetId;
        address contributor;
        bytes32 contentHash;
        string license;
        uint64 timestamp;
        uint64 nonce;
        uint64 deadline;
    }

    bytes32 private constant CONTRIBUTION_TYPEHASH = keccak256(
        "Contribution(uint256 datanetId,address contributor,bytes32 contentHash,string license,uint64 timestamp,uint64 nonce,uint64 deadline)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    uint256 public datanetCount;
    mapping(uint256 id => Datanet) private _datanets;
    mapping(bytes32 nameHash => uint256 id) public datanetIdByName;
    mapping(uint256 id => mapping(address account => bool)) public isAnchorer;
    mapping(uint256 id => mapping(address account => bool)) public isValidator;
    mapping(bytes32 batchId => Batch) private _batches;
    mapping(bytes32 contributionId => bool) public revoked;

    event DatanetCreated(
        uint256 indexed id, address indexed owner, string name, string domain, bytes32 schemaHash, string metadataURI
    );
    event BatchAnchored(
        uint256 indexed datanetId,
        bytes32 indexed batchId,
        bytes32 merkleRoot,
        uint256 count,
        string manifestURI,
        bytes32 manifestHash,
        uint64 lakeVersion
    );
    event ContributionRevoked(
        uint256 indexed datanetId, bytes32 indexed contributionId, address indexed by, string reason
    );
    event ValidationRecorded(
        uint256 indexed datanetId,
        bytes32 indexed batchId,
        address indexed validator,
        bytes32 verdictsRoot,
        uint256 accepted,
        uint256 rejected
    );
    event AnchorerSet(uint256 indexed datanetId, address indexed account, bool allowed);
    event ValidatorSet(uint256 indexed datanetId, address indexed account, bool allowed);

    error NameTaken(string name);
    error EmptyName();
    error UnknownDatanet(uint256 id);
    error NotDatanetOwner(uint256 id, address account);
    error NotAnchorer(uint256 id, address account);
    error NotValidator(uint256 id, address account);
    error NotContributorOrOwner(uint256 id, bytes32 contributionId, address account);
    error EmptyBatch();
    error BatchAlreadyAnchored(bytes32 batchId);
    error BatchIdMismatch(bytes32 batchId, bytes32 expected);
    error UnknownBatch(bytes32 batchId);
    error AlreadyRevoked(bytes32 contributionId);
    error NotInBatch(bytes32 batchId, bytes32 contributionId);

    modifier onlyDatanetOwner(uint256 id) {
        if (_datanets[id].owner != msg.sender) {
            if (_datanets[id].owner == address(0)) revert UnknownDatanet(id);
            revert NotDatanetOwner(id, msg.sender);
        }
        _;
    }

    /// @notice EIP-712 domain separator of contributions to this registry.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("Tributary"), keccak256("1"), block.chainid, address(this)));
    }

    /// @notice Registers a Datanet; the caller owns it and may anchor its batches.
    function createDatanet(string calldata name, string calldata domain, bytes32 schemaHash, string calldata metadataURI)
        external
        returns (uint256 id)
    {
        if (bytes(name).length == 0) revert EmptyName();
        bytes32 nameHash = keccak256(bytes(name));
        if (datanetIdByName[nameHash] != 0) revert NameTaken(name);
        id = ++datanetCount;
        _datanets[id] = Datanet({owner: msg.sender, schemaHash: schemaHash, name: name});
        datanetIdByName[nameHash] = id;
        isAnchorer[id][msg.sender] = true;
        emit DatanetCreated(id, msg.sender, name, domain, schemaHash, metadataURI);
        emit AnchorerSet(id, msg.sender, true);
    }

    function datanet(uint256 id) external view returns (address owner, bytes32 schemaHash, string memory name) {
        Datanet storage d = _datanets[id];
        if (d.owner == address(0)) revert UnknownDatanet(id);
        return (d.owner, d.schemaHash, d.name);
    }

    function setAnchorer(uint256 id, address account, bool allowed) external onlyDatanetOwner(id) {
        isAnchorer[id][account] = allowed;
        emit AnchorerSet(id, account, allowed);
    }

    function setValidator(uint256 id, address account, bool allowed) external onlyDatanetOwner(id) {
        isValidator[id][account] = allowed;
        emit ValidatorSet(id, account, allowed);
    }

    /// @notice Anchors a batch: the Merkle root over its contribution ids. A batch id is
    /// anchored at most once, which makes retries after a crash safe, and is
    /// `batchIdOf(datanetId, merkleRoot)`: it names one Datanet's batch, so an anchorer of
    /// another Datanet cannot anchor it first (and so block it, or validate it as theirs).
    function anchorBatch(
        uint256 datanetId,
        bytes32 batchId,
        bytes32 merkleRoot,
        uint256 count,
        string calldata manifestURI,
        bytes32 manifestHash,
        uint64 lakeVersion
    ) external {
        if (_datanets[datanetId].owner == address(0)) revert UnknownDatanet(datanetId);
        if (!isAnchorer[datanetId][msg.sender]) revert NotAnchorer(datanetId, msg.sender);
        if (count == 0) revert EmptyBatch();
        bytes32 expected = batchIdOf(datanetId, merkleRoot);
        if (batchId != expected) revert BatchIdMismatch(batchId, expected);
        if (_batches[batchId].count != 0) revert BatchAlreadyAnchored(batchId);
        _batches[batchId] = Batch({datanetId: datanetId, merkleRoot: merkleRoot, count: count});
        emit BatchAnchored(datanetId, batchId, merkleRoot, count, manifestURI, manifestHash, lakeVersion);
    }

    /// @notice The id of the batch of Datanet `datanetId` whose contribution ids have Merkle
    /// root `merkleRoot`.
    function batchIdOf(uint256 datanetId, bytes32 merkleRoot) public pure returns (bytes32) {
        return keccak256(abi.encode(datanetId, merkleRoot));
    }

    function batch(bytes32 batchId) external view returns (uint256 datanetId, bytes32 merkleRoot, uint256 count) {
        Batch storage b = _batches[batchId];
        return (b.datanetId, b.merkleRoot, b.count);
    }

    /// @notice True when `contributionId` is a leaf of the anchored batch and not revoked.
    function verifyContribution(bytes32 batchId, bytes32 contributionId, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Batch storage b = _batches[batchId];
        if (b.count == 0) revert UnknownBatch(batchId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(contributionId))));
        return !revoked[contributionId] && MerkleProof.verify(proof, b.merkleRoot, leaf);
    }

    /// @notice A validator's verdicts on an anchored batch.
    function recordValidation(
        uint256 datanetId,
        bytes32 batchId,
        bytes32 verdictsRoot,
        uint256 accepted,
        uint256 rejected
    ) external {
        if (!isValidator[datanetId][msg.sender]) revert NotValidator(datanetId, msg.sender);
        if (_batches[batchId].count == 0 || _batches[batchId].datanetId != datanetId) revert UnknownBatch(batchId);
        emit ValidationRecorded(datanetId, batchId, msg.sender, verdictsRoot, accepted, rejected);
    }

    /// @notice The id of contribution `c`: its EIP-712 struct hash.
    function contributionIdOf(Contribution calldata c) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                CONTRIBUTION_TYPEHASH,
                c.datanetId,
                c.contributor,
                c.contentHash,
                keccak256(bytes(c.license)),
                c.timestamp,
                c.nonce,
                c.deadline
            )
        );
    }

    /// @notice Revokes contribution `c`, anchored in batch `batchId` (`proof` is its Merkle
    /// proof against the batch root). Only the contribution's own contributor or the owner of
    /// the Datanet it was signed for and anchored in may revoke it: the id commits to both, so
    /// a contribution cannot be claimed by another Datanet's batch or owner.
    function revokeContribution(
        bytes32 batchId,
        Contribution calldata c,
        bytes32[] calldata proof,
        string calldata reason
    ) external {
        Batch storage b = _batches[batchId];
        if (b.count == 0) revert UnknownBatch(batchId);
        bytes32 id = contributionIdOf(c);
        if (c.datanetId != b.datanetId) revert NotInBatch(batchId, id);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(id))));
        if (!MerkleProof.verify(proof, b.merkleRoot, leaf)) revert NotInBatch(batchId, id);
        if (revoked[id]) revert AlreadyRevoked(id);
        if (msg.sender != c.contributor && msg.sender != _datanets[b.datanetId].owner) {
            revert NotContributorOrOwner(b.datanetId, id, msg.sender);
        }
        revoked[id] = true;
        emit ContributionRevoked(b.datanetId, id, msg.sender, reason);
    }
}
