-- Each contribution's influence on each adapter: its TracIn score against the adapter's
-- held-out set (written when the adapter is trained), its share of the positive scores of the
-- contributions not revoked on chain since (a revoked contribution keeps its score for the record and
-- gets no share), and a flag for consistently negative influence (a negative mean, negative on
-- at least three of four held-out queries): candidates for curation or penalty.
CREATE VIEW contribution_influence AS
WITH a AS (
    SELECT t.adapter_id, t.datanet_id, t.contribution_id, t.contributor, t.score,
           t.negative_fraction, t.queries,
           r.contribution_id IS NOT NULL AS revoked
    FROM attributions t
    LEFT JOIN revoked_contributions r
           ON r.contribution_id = t.contribution_id
    WHERE t.subject_kind = 'adapter' AND t.method = 'tracin'
), p AS (
    SELECT *, CASE WHEN revoked OR score <= 0 THEN 0.0 ELSE score END AS positive
    FROM a
)
SELECT adapter_id, datanet_id, contribution_id, contributor, score, revoked,
       CASE WHEN positive > 0 THEN positive / SUM(positive) OVER (PARTITION BY adapter_id)
            ELSE 0.0 END AS share,
       negative_fraction, queries,
       score < 0 AND negative_fraction >= 0.75 AS consistently_negative
FROM p
