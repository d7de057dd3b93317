-- Scheduled training. `jobs` holds each schedule (from tributary.toml, upserted by every worker
-- that starts with it) and the next occurrence it is due at; a worker takes an occurrence by
-- compare-and-set on `next_due_ms`, so two workers never both take it. `job_runs` is the
-- history: one row per run, leased to one worker at a time (`worker`, `lease_until_ms`,
-- renewed by heartbeats); a run whose lease ran out is taken over by another worker.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    name          TEXT   NOT NULL PRIMARY KEY,
    cron          TEXT   NOT NULL,
    spec          TEXT   NOT NULL,
    paused        BIGINT NOT NULL,
    next_due_ms   BIGINT NOT NULL,
    runs          BIGINT NOT NULL,
    last_check_ms BIGINT,
    last_check    TEXT,
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE job_runs (
    job               TEXT   NOT NULL,
    seq               BIGINT NOT NULL,
    trigger_kind      TEXT   NOT NULL,
    due_ms            BIGINT NOT NULL,
    status            TEXT   NOT NULL,
    worker            TEXT   NOT NULL,
    lease_until_ms    BIGINT NOT NULL,
    attempts          BIGINT NOT NULL,
    started_ms        BIGINT NOT NULL,
    finished_ms       BIGINT,
    snapshot_id       TEXT,
    contributions     BIGINT,
    new_contributions BIGINT,
    adapter_id        TEXT,
    version           TEXT,
    current_loss      DOUBLE PRECISION,
    eval_loss         DOUBLE PRECISION,
    message           TEXT   NOT NULL,
    PRIMARY KEY (job, seq)
);

CREATE INDEX job_runs_status ON job_runs (status, lease_until_ms);
