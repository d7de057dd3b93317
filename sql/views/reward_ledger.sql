-- Reward epochs as allocated on chain (`EpochAllocated`) and verified against the lake, with
-- what each account was credited where the graph holds a `rewarded` edge (epoch ->
-- contributor): `amount` is exact integer token units, the sum of the account's rows in
-- `reward_allocations` (the leaf it claims against), `share` its fraction of the epoch.
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
       n.tx_hash
FROM lineage_nodes n
LEFT JOIN lineage_edges e ON e.chain_id = n.chain_id AND e.src = n.id AND e.kind = 'rewarded'
LEFT JOIN paid p ON p.epoch = n.id AND p.contributor = e.dst
WHERE n.kind = 'reward_epoch'
ORDER BY n.block_number, contributor
