// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Relay (tests only)
/// @notice A contract account, as a Safe or an ERC-4337 account is: its owner has it call
/// other contracts, so there the contract is `msg.sender` while the owner's key sends the
/// transaction.
contract Relay {
    address public immutable owner;

    error NotOwner(address caller);

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Calls `target` with `data` as this contract; a revert is passed on as it is.
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        (bool ok, bytes memory out) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(out, 32), mload(out))
            }
        }
        return out;
    }
}
