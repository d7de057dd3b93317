-- Jobs made through the API (the ModelFactory) and runs asked for there.
-- `jobs.created_by` names the API credential that created a job (NULL: a worker's
-- tributary.toml). `jobs.requested_ms` and `jobs.requested_by` hold a run asked for and not yet
-- started: a worker starts it and clears them by compare-and-set, so one run starts per request.
-- `job_runs.requested_by` keeps who asked for a run. `job_run_losses` is each run's training
-- loss per optimizer step, written while it trains by the worker holding the run (a takeover
-- clears the steps of the attempt before). `job_workers` is when each scheduler worker last
-- swept the store, so the API can say when no worker is there to start what it was asked.

ALTER TABLE jobs ADD COLUMN created_by TEXT;
ALTER TABLE jobs ADD COLUMN requested_ms BIGINT;
ALTER TABLE jobs ADD COLUMN requested_by TEXT;
ALTER TABLE job_runs ADD COLUMN requested_by TEXT;

CREATE TABLE job_run_losses (
    job  TEXT             NOT NULL,
    seq  BIGINT           NOT NULL,
    step BIGINT           NOT NULL,
    loss DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job, seq, step)
);

CREATE TABLE job_workers (
    worker  TEXT   NOT NULL PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
