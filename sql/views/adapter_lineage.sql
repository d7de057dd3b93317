-- Each adapter's direct ancestry from the lineage graph: its parents and base model
-- (`derived_from`), the snapshot it was trained on, and the Datanets that snapshot drew from.
CREATE VIEW adapter_lineage AS
SELECT e.chain_id, e.src AS adapter,
       CASE WHEN n.kind = 'base_model' THEN 'base_model' ELSE 'parent' END AS relation,
       e.dst AS ancestor, e.block_number
FROM lineage_edges e
JOIN lineage_nodes n ON n.chain_id = e.chain_id AND n.id = e.dst
WHERE e.kind = 'derived_from'
UNION ALL
SELECT p.chain_id, p.dst AS adapter, 'snapshot' AS relation, t.src AS ancestor, p.block_number
FROM lineage_edges p
JOIN lineage_edges t ON t.chain_id = p.chain_id AND t.dst = p.src AND t.kind = 'trained'
WHERE p.kind = 'produced'
UNION ALL
SELECT p.chain_id, p.dst AS adapter, 'datanet' AS relation, d.dst AS ancestor, p.block_number
FROM lineage_edges p
JOIN lineage_edges t ON t.chain_id = p.chain_id AND t.dst = p.src AND t.kind = 'trained'
JOIN lineage_edges d ON d.chain_id = t.chain_id AND d.src = t.src AND d.kind = 'drawn_from'
WHERE p.kind = 'produced'
