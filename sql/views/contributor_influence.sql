-- A contributor's influence on each adapter: their share is the sum of their contributions'
-- shares in contribution_influence (the one definition of credit: revoked contributions and
-- non-positive scores get none), `influence` the scores of their unrevoked contributions
-- summed (negative ones included), and how many of their contributions are consistently
-- negative.
CREATE VIEW contributor_influence AS
SELECT adapter_id, contributor,
       COUNT(*) AS contributions,
       SUM(CASE WHEN revoked THEN 0.0 ELSE score END) AS influence,
       SUM(share) AS share,
       SUM(CASE WHEN consistently_negative THEN 1 ELSE 0 END) AS negative_contributions
FROM contribution_influence
GROUP BY adapter_id, contributor
ORDER BY adapter_id, share DESC, contributor
