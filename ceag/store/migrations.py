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
    (4, "what the pruned model costs", """
-- From the run's footprint (ceag.run.measure): NULL for runs made before it was measured. The pruned model is
-- the rebuilt one (structured pruning: its pruned channels removed) or the masked one (unstructured: full size).
ALTER TABLE runs ADD COLUMN channel_sparsity DOUBLE;         -- channels removed / channels of prunable groups
ALTER TABLE runs ADD COLUMN footprint_model VARCHAR;         -- rebuilt | masked
ALTER TABLE runs ADD COLUMN params BIGINT;                   -- the pruned model's parameters
ALTER TABLE runs ADD COLUMN macs BIGINT;                     -- its multiply-accumulates per sample
ALTER TABLE runs ADD COLUMN size_bytes BIGINT;               -- its saved state dict
ALTER TABLE runs ADD COLUMN latency_cpu_b1_ms DOUBLE;        -- median eval forward pass, CPU, batch 1
ALTER TABLE runs ADD COLUMN latency_cpu_b64_ms DOUBLE;       -- ... batch 64
ALTER TABLE runs ADD COLUMN latency_gpu_b1_ms DOUBLE;        -- on the run's GPU (NULL: trained on a CPU)
ALTER TABLE runs ADD COLUMN latency_gpu_b64_ms DOUBLE;
ALTER TABLE runs ADD COLUMN dense_params BIGINT;             -- the same of the dense model, measured beside it
ALTER TABLE runs ADD COLUMN dense_macs BIGINT;
ALTER TABLE runs ADD COLUMN dense_size_bytes BIGINT;
ALTER TABLE runs ADD COLUMN dense_latency_cpu_b1_ms DOUBLE;
ALTER TABLE runs ADD COLUMN dense_latency_cpu_b64_ms DOUBLE;
ALTER TABLE runs ADD COLUMN dense_latency_gpu_b1_ms DOUBLE;
ALTER TABLE runs ADD COLUMN dense_latency_gpu_b64_ms DOUBLE;
ALTER TABLE runs ADD COLUMN latency_threads INTEGER;         -- torch's intra-op threads of the CPU timings
ALTER TABLE runs ADD COLUMN footprint JSON;                  -- the whole record (machine, every timing)
"""),
]
