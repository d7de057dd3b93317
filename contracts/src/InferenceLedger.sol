// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessRoles} from "./AccessRoles.sol";

/// @title InferenceLedger
/// @notice Batches of served inferences: a Merkle root over inference records whose manifest
/// (with attribution) lives in the lake.
contract InferenceLedger is AccessRoles {
    bytes32 public constant RECORDER_ROLE = keccak256("RECORDER_ROLE");

    mapping(bytes32 batchId => bytes32 merkleRoot) public batchRoot;

    event InferencesRecorded(
        bytes32 indexed batchId, bytes32[] adapterIds, bytes32 merkleRoot, uint256 count, string manifestURI
    );

    error BatchAlreadyRecorded(bytes32 batchId);
    error EmptyBatch();
    error EmptyRoot();

    constructor(address admin) AccessRoles(admin) {
        _grant(RECORDER_ROLE, admin);
    }

    function recordInferences(
        bytes32 batchId,
        bytes32[] calldata adapterIds,
        bytes32 merkleRoot,
        uint256 count,
        string calldata manifestURI
    ) external onlyRole(RECORDER_ROLE) {
        if (count == 0) revert EmptyBatch();
        // A zero root would read as "not recorded", so the batch could be recorded again.
        if (merkleRoot == bytes32(0)) revert EmptyRoot();
        if (batchRoot[batchId] != bytes32(0)) revert BatchAlreadyRecorded(batchId);
        batchRoot[batchId] = merkleRoot;
        emit InferencesRecorded(batchId, adapterIds, merkleRoot, count, manifestURI);
    }
}
