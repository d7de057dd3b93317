-- Jobs made through the API (the ModelFactory) and runs asked for there.
-- `jobs.created_by` names the API credential that created a job (NULL: a worker's
-- tributary.toml). `jobs.requested_ms` and `jobs.requested_by` hold a run asked for and not yet
-- started: a worker starts it and clears them by compare-and-set, so one run starts per request.
-- `job_runs.requested_by` keeps who asked for a run. `job_run_losses` is each run's training
-- loss per optimizer step, written while it trains (a run taken over overwrites its steps).

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
