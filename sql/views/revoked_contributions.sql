-- Contributions revoked on chain: the revocations the indexer read from the chain (any
-- wallet's `revokeContribution`, mirrored in `lineage_nodes`), and the tombstones `tributary
-- revoke` writes once its transaction has landed (so a revocation shows before the next index).
CREATE VIEW revoked_contributions AS
SELECT substr(id, 12) AS contribution_id FROM lineage_nodes WHERE kind = 'revocation'
UNION
SELECT contribution_id FROM revocations
