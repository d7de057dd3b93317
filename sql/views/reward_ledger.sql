-- Reward epochs as allocated on chain (`EpochAllocated`) and verified against the lake, with
-- what each account was credited where the graph holds a `rewarded` edge (epoch ->
-- contributor): `amount` is exact integer token units, the sum of the account's rows in
-- `reward_allocations` (the leaf it claims against), `share` its fraction of the epoch;
-- `claimed_block` and `claimed_tx` where the account has claimed it (`Claimed`, whoever sent
-- it), NULL while it is still to claim.
CREATE VIEW reward_ledger AS
WITH paid AS (
    SELECT 'reward_epoch:' || CAST(epoch AS VARCHAR) AS epoch,
           'contributor:' || account AS contributor,
           SUM(amount) AS amount
    FROM reward_allocations
    GROUP BY epoch, account
)
SELECT n.chain_id,
       n.id AS epoch,
       n.props AS allocation,
       e.dst AS contributor,
       CAST(p.amount AS DECIMAL(38, 0)) AS amount,
       e.weight AS share,
       n.block_number,
       n.tx_hash,
       c.block_number AS claimed_block,
       c.tx_hash AS claimed_tx
FROM lineage_nodes n
LEFT JOIN lineage_edges e ON e.chain_id = n.chain_id AND e.src = n.id AND e.kind = 'rewarded'
LEFT JOIN paid p ON p.epoch = n.id AND p.contributor = e.dst
LEFT JOIN lineage_edges c ON c.chain_id = n.chain_id AND c.src = e.dst AND c.dst = n.id
    AND c.kind = 'claimed'
WHERE n.kind = 'reward_epoch'
ORDER BY n.block_number, contributor
