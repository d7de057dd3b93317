-- Contributors ranked by their standing contributions (accepted and not revoked on chain), with how
-- many Datanets they gave to and when they first and last contributed.
CREATE VIEW contributor_leaderboard AS
SELECT c.contributor,
       COUNT(*) AS contributions,
       COUNT(DISTINCT c.datanet_id) AS datanets,
       MIN(c.ingested_at) AS first_contribution,
       MAX(c.ingested_at) AS last_contribution
FROM contributions c
LEFT JOIN revoked_contributions r ON r.contribution_id = c.contribution_id
WHERE r.contribution_id IS NULL
GROUP BY c.contributor
ORDER BY contributions DESC, c.contributor
