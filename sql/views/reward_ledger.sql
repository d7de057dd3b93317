-- Reward epochs as allocated on chain (`EpochAllocated`), with what each contributor was
-- credited where the graph holds `rewarded` edges (epoch -> contributor, weight = amount).
CREATE VIEW reward_ledger AS
SELECT n.chain_id,
       n.id AS epoch,
       n.props AS allocation,
       e.dst AS contributor,
       e.weight AS amount,
       n.block_number,
       n.tx_hash
FROM lineage_nodes n
LEFT JOIN lineage_edges e ON e.chain_id = n.chain_id AND e.src = n.id AND e.kind = 'rewarded'
WHERE n.kind = 'reward_epoch'
ORDER BY n.block_number, contributor
