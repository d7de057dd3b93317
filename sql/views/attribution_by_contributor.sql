-- The credit recorded for answers (attributed_to edges from answer nodes), rolled up to the
-- contributor of each contribution (an answer's credit past its listed contributions is on
-- an edge to the contributor itself): how many credit records name them, how many answers
-- (`subjects`), and the summed credit, which GraphQL's `Contributor.influence` also reports.
CREATE VIEW attribution_by_contributor AS
SELECT a.chain_id,
       COALESCE(c.src, a.dst) AS contributor,
       COUNT(*) AS attributions,
       COUNT(DISTINCT a.src) AS subjects,
       SUM(COALESCE(a.weight, 0)) AS weight
FROM lineage_edges a
LEFT JOIN lineage_edges c ON c.chain_id = a.chain_id AND c.dst = a.dst AND c.kind = 'contributed'
WHERE a.kind = 'attributed_to' AND a.src LIKE 'answer:%'
GROUP BY a.chain_id, COALESCE(c.src, a.dst)
ORDER BY weight DESC, attributions DESC, contributor
