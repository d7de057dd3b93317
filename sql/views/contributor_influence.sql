-- A contributor's influence on each adapter: the scores of their unrevoked contributions
-- summed (negative ones included, so scores that are only noise around zero cancel), their
-- share of the positive totals, and how many of their contributions are consistently negative.
CREATE VIEW contributor_influence AS
WITH c AS (
    SELECT adapter_id, contributor,
           COUNT(*) AS contributions,
           SUM(CASE WHEN revoked THEN 0.0 ELSE score END) AS influence,
           SUM(CASE WHEN consistently_negative THEN 1 ELSE 0 END) AS negative_contributions
    FROM contribution_influence
    GROUP BY adapter_id, contributor
), p AS (
    SELECT *, CASE WHEN influence > 0 THEN influence ELSE 0.0 END AS positive FROM c
)
SELECT adapter_id, contributor, contributions, influence,
       CASE WHEN positive > 0 THEN positive / SUM(positive) OVER (PARTITION BY adapter_id)
            ELSE 0.0 END AS share,
       negative_contributions
FROM p
ORDER BY adapter_id, share DESC, contributor
