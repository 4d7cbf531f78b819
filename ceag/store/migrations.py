"""Numbered schema migrations. Never edit one that has shipped: add the next number."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    status VARCHAR NOT NULL,          -- running | finished | diverged | failed | interrupted
    reason VARCHAR,
    dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    sparsity DOUBLE NOT NULL,
    achieved_sparsity DOUBLE,
    tolerance DOUBLE,
    seed INTEGER NOT NULL,
    reported_epoch INTEGER,
    best_epoch INTEGER,
    selection_split VARCHAR,
    progress_epoch INTEGER,
    total_epochs INTEGER,
    config JSON NOT NULL,
    data_key VARCHAR NOT NULL,
    dense_key VARCHAR NOT NULL,
    prune_key VARCHAR NOT NULL,
    device VARCHAR,
    threads INTEGER,
    wall_seconds DOUBLE,
    diverged_step BIGINT,
    started_at VARCHAR,
    finished_at VARCHAR,
    ingested_at TIMESTAMP NOT NULL
);
CREATE TABLE run_metrics (
    run_id VARCHAR NOT NULL,
    epoch INTEGER NOT NULL,
    split VARCHAR NOT NULL,
    accuracy DOUBLE,
    loss DOUBLE,
    dense_accuracy DOUBLE,
    acc_gap DOUBLE,
    max_excess_gap DOUBLE,
    psi_pw DOUBLE,
    sparsity DOUBLE
);
CREATE TABLE group_metrics (
    run_id VARCHAR NOT NULL,
    epoch INTEGER NOT NULL,
    split VARCHAR NOT NULL,
    group_id INTEGER NOT NULL,
    group_name VARCHAR NOT NULL,
    n INTEGER NOT NULL,
    accuracy DOUBLE,
    loss DOUBLE,
    dense_accuracy DOUBLE,
    acc_gap DOUBLE,
    excess_gap DOUBLE
);
CREATE TABLE duals (
    run_id VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    epoch INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    multiplier DOUBLE,
    violation DOUBLE
);
CREATE TABLE groups (
    data_key VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    group_id INTEGER NOT NULL,
    group_name VARCHAR NOT NULL,
    n_train INTEGER,
    n_val INTEGER,
    n_test INTEGER,
    PRIMARY KEY (data_key, group_id)
);
"""),
    (2, "the data each run read", """
ALTER TABLE runs ADD COLUMN data_fingerprint VARCHAR;  -- NULL: a run made before fingerprints
ALTER TABLE runs ADD COLUMN skipped_rows INTEGER;      -- rows or files left out while loading
ALTER TABLE runs ADD COLUMN data_report JSON;          -- skips by reason and group, notes, split rule
ALTER TABLE runs ADD COLUMN data_warning VARCHAR;      -- a group that lost more than a few percent
"""),
    (3, "run diagnostics", """
CREATE TABLE run_diagnostics (
    run_id VARCHAR PRIMARY KEY,
    converged BOOLEAN,                -- NULL: no complete window (no fine-tuning, diverged)
    window_first INTEGER,             -- the diagnostic window's first and last epoch
    window_last INTEGER,
    advice VARCHAR,                   -- what to change when the run did not settle
    constraints_active BOOLEAN,       -- NULL for methods without multipliers
    max_multiplier DOUBLE,
    multiplier_ratio DOUBLE,          -- max_g max lambda_g / (group g's share of the training split)
    estimates_agree BOOLEAN,          -- CEAG: buffered psi_hat_g vs evaluated train psi_g
    warnings VARCHAR[],
    diagnostics JSON NOT NULL         -- the whole object `run --json` prints
);
CREATE TABLE run_spreads (
    run_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    accuracy DOUBLE,                  -- max - min over the window (fraction)
    max_excess_gap DOUBLE,
    accuracy_limit DOUBLE,
    max_excess_gap_limit DOUBLE
);
CREATE TABLE constraint_groups (
    run_id VARCHAR NOT NULL,
    group_id INTEGER NOT NULL,
    max_multiplier DOUBLE,
    multiplier_ratio DOUBLE,
    dual_steps BIGINT,
    violated_share DOUBLE,
    last_estimate DOUBLE,             -- the last buffered constraint value (CEAG: psi_hat_g)
    train_excess_gap DOUBLE,          -- the evaluated train value at the last epoch
    window_estimate DOUBLE,
    window_train_excess_gap DOUBLE,
    disagree BOOLEAN
);
"""),
]
