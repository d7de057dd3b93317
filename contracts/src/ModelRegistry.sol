// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessRoles} from "./AccessRoles.sol";

/// @title ModelRegistry
/// @notice Base models, frozen Datanet snapshots and LoRA adapters with their lineage.
/// Ids are content addresses computed off chain; each may be registered once.
contract ModelRegistry is AccessRoles {
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    mapping(bytes32 id => bool) public isBaseModel;
    mapping(bytes32 id => bool) public isSnapshot;
    mapping(bytes32 id => bool) public isAdapter;
    /// @notice The adapter published under each version string (keccak256 of `line@x.y.z`):
    /// a version names one adapter, so two workers cannot both publish the same one.
    mapping(bytes32 versionHash => bytes32 id) public adapterByVersion;
    /// @notice The account that published each adapter: `msg.sender`, so a Safe, a forwarder
    /// or a smart account that holds the role, not whoever relayed its transaction. The model
    /// owner's part of the adapter's fees is paid to it.
    mapping(bytes32 id => address) public publisherOf;

    event BaseModelRegistered(bytes32 indexed id, bytes32 weightsHash, string architecture, string uri);
    event SnapshotCommitted(
        bytes32 indexed id, uint256[] datanetIds, uint64[] lakeVersions, bytes32 contributionsRoot, uint256 count
    );
    event AdapterPublished(
        bytes32 indexed id,
        bytes32 indexed baseModelId,
        bytes32[] parentIds,
        bytes32 snapshotId,
        bytes32 configHash,
        bytes32 weightsHash,
        string uri,
        string version
    );

    error AlreadyRegistered(bytes32 id);
    error UnknownBaseModel(bytes32 id);
    error UnknownSnapshot(bytes32 id);
    error UnknownAdapter(bytes32 id);
    error LengthMismatch(uint256 datanets, uint256 versions);
    error VersionTaken(string version, bytes32 adapterId);

    constructor(address admin) AccessRoles(admin) {
        _grant(PUBLISHER_ROLE, admin);
    }

    function registerBaseModel(bytes32 id, bytes32 weightsHash, string calldata architecture, string calldata uri)
        external
        onlyRole(PUBLISHER_ROLE)
    {
        if (isBaseModel[id]) revert AlreadyRegistered(id);
        isBaseModel[id] = true;
        emit BaseModelRegistered(id, weightsHash, architecture, uri);
    }

    function commitSnapshot(
        bytes32 id,
        uint256[] calldata datanetIds,
        uint64[] calldata lakeVersions,
        bytes32 contributionsRoot,
        uint256 count
    ) external onlyRole(PUBLISHER_ROLE) {
        if (isSnapshot[id]) revert AlreadyRegistered(id);
        if (datanetIds.length != lakeVersions.length) revert LengthMismatch(datanetIds.length, lakeVersions.length);
        isSnapshot[id] = true;
        emit SnapshotCommitted(id, datanetIds, lakeVersions, contributionsRoot, count);
    }

    function publishAdapter(
        bytes32 id,
        bytes32 baseModelId,
        bytes32[] calldata parentIds,
        bytes32 snapshotId,
        bytes32 configHash,
        bytes32 weightsHash,
        string calldata uri,
        string calldata version
    ) external onlyRole(PUBLISHER_ROLE) {
        if (isAdapter[id]) revert AlreadyRegistered(id);
        _claimVersion(version, id);
        if (!isBaseModel[baseModelId]) revert UnknownBaseModel(baseModelId);
        if (snapshotId != bytes32(0) && !isSnapshot[snapshotId]) revert UnknownSnapshot(snapshotId);
        for (uint256 i = 0; i < parentIds.length; i++) {
            if (!isAdapter[parentIds[i]]) revert UnknownAdapter(parentIds[i]);
        }
        isAdapter[id] = true;
        publisherOf[id] = msg.sender;
        emit AdapterPublished(id, baseModelId, parentIds, snapshotId, configHash, weightsHash, uri, version);
    }

    function _claimVersion(string calldata version, bytes32 id) private {
        bytes32 versionHash = keccak256(bytes(version));
        bytes32 holder = adapterByVersion[versionHash];
        if (holder != bytes32(0)) revert VersionTaken(version, holder);
        adapterByVersion[versionHash] = id;
    }
}
