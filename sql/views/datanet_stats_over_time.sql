-- Per Datanet and day (UTC): records accepted and rejected, distinct contributors, and the
-- accepted total to date.
CREATE VIEW datanet_stats_over_time AS
WITH accepted AS (
    SELECT datanet_id, date_trunc('day', ingested_at) AS day,
           COUNT(*) AS accepted, COUNT(DISTINCT contributor) AS contributors
    FROM contributions
    GROUP BY datanet_id, date_trunc('day', ingested_at)
), rejected AS (
    SELECT datanet_id, date_trunc('day', rejected_at) AS day, COUNT(*) AS rejected
    FROM rejections
    GROUP BY datanet_id, date_trunc('day', rejected_at)
), days AS (
    SELECT COALESCE(a.datanet_id, r.datanet_id) AS datanet_id,
           COALESCE(a.day, r.day) AS day,
           COALESCE(a.accepted, 0) AS accepted,
           COALESCE(r.rejected, 0) AS rejected,
           COALESCE(a.contributors, 0) AS contributors
    FROM accepted a
    FULL JOIN rejected r ON a.datanet_id = r.datanet_id AND a.day = r.day
)
SELECT datanet_id, day, accepted, rejected, contributors,
       SUM(accepted) OVER (PARTITION BY datanet_id ORDER BY day) AS accepted_to_date
FROM days
ORDER BY datanet_id, day
