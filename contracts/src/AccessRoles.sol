// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title AccessRoles
/// @notice Minimal role-based access control: an admin role that grants and revokes the others.
/// @dev Written for Tributary; compatible in spirit (not in storage layout) with OpenZeppelin's
/// AccessControl. The deployer holds ADMIN_ROLE.
abstract contract AccessRoles {
    bytes32 public constant ADMIN_ROLE = keccak256("ADMIN_ROLE");

    mapping(bytes32 role => mapping(address account => bool)) private _roles;

    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
    event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);

    /// The caller lacks `role`.
    error MissingRole(bytes32 role, address account);

    constructor(address admin) {
        _grant(ADMIN_ROLE, admin);
    }

    modifier onlyRole(bytes32 role) {
        if (!_roles[role][msg.sender]) revert MissingRole(role, msg.sender);
        _;
    }

    function hasRole(bytes32 role, address account) public view returns (bool) {
        return _roles[role][account];
    }

    function grantRole(bytes32 role, address account) external onlyRole(ADMIN_ROLE) {
        _grant(role, account);
    }

    function revokeRole(bytes32 role, address account) external onlyRole(ADMIN_ROLE) {
        if (_roles[role][account]) {
            _roles[role][account] = false;
            emit RoleRevoked(role, account, msg.sender);
        }
    }

    function _grant(bytes32 role, address account) internal {
        if (!_roles[role][account]) {
            _roles[role][account] = true;
            emit RoleGranted(role, account, msg.sender);
        }
    }
}
