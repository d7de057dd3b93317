-- Attribution edges (inference or adapter -> contribution) rolled up to the contributor of
-- each contribution: how many answers credit them and the summed weight of those credits.
CREATE VIEW attribution_by_contributor AS
SELECT a.chain_id,
       c.src AS contributor,
       COUNT(*) AS attributions,
       COUNT(DISTINCT a.src) AS subjects,
       SUM(COALESCE(a.weight, 0)) AS weight
FROM lineage_edges a
JOIN lineage_edges c ON c.chain_id = a.chain_id AND c.dst = a.dst AND c.kind = 'contributed'
WHERE a.kind = 'attributed_to'
GROUP BY a.chain_id, c.src
ORDER BY weight DESC, attributions DESC, contributor
