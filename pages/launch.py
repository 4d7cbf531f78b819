"""Launch: a grid from the browser, run in the background; live progress with cancel."""

import streamlit as st

from ceag import jobs
from ceag.config import METHODS, ConfigError
from ceag.grid import GridSpec
from ceag.layouts import available
from ceag.plots import METHOD_LABELS
from pages._shared import data_dir, query, results_dir

MODELS = {"digits": ["mlp", "cnn", "resnet20"], "synthetic": ["mlp"],
          "utkface": ["cnn", "mobilenet_v2", "resnet18", "resnet34"],
          "fairface": ["cnn", "resnet18", "resnet34", "mobilenet_v2"], "cifar100": ["resnet20", "resnet56", "cnn"]}

st.title("Launch a grid")
results = results_dir()
try:
    limits = jobs.LaunchLimits.from_env()
except ConfigError as err:
    st.error(f"The server's launch limits are misconfigured: {err}")
    st.stop()


def password_ok() -> bool:
    try:
        secret = st.secrets.get("launch_password")
    except Exception:  # no secrets file: launching is open (localhost use)
        secret = None
    if not secret:
        return True
    if st.session_state.get("launch_unlocked"):
        return True
    typed = st.text_input("Password to launch runs", type="password")
    if typed and typed == secret:
        st.session_state["launch_unlocked"] = True
        return True
    if typed:
        st.error("Wrong password.")
    return False


def parse_list(text: str, kind, name: str) -> list:
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(name, text, f"expected comma-separated {kind.__name__} values, e.g. "
                          + ("0.9, 0.95" if kind is float else "0, 1")) from None
    return values


@st.fragment(run_every=1.0)
def job_panel() -> None:
    listed = jobs.list_jobs(results)[:5]
    if not listed:
        st.caption("No jobs yet.")
        return
    for job in listed:
        total = max(int(job.get("total") or 1), 1)
        done = sum(int(job.get(k) or 0) for k in ("cached", "finished", "diverged", "failed", "cancelled"))
        state = job.get("state")
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.progress(min(done / total, 1.0), text=f"job {job['job_id']}: {state}, {done} of {total} runs "
                        f"({job.get('cached', 0)} cached, {job.get('failed', 0)} failed, "
                        f"{job.get('diverged', 0)} diverged)")
            if state in ("starting", "running") and c2.button("Cancel", key=f"cancel_{job['job_id']}"):
                jobs.cancel(results, job["job_id"])
            running = [(rid, r) for rid, r in job.get("runs", {}).items() if r.get("status") == "running"]
            for rid, r in running:
                epoch, total_epochs = r.get("epoch") or 0, r.get("total_epochs") or 0
                st.caption(f"{METHOD_LABELS.get(r['method'], r['method'])} sparsity {r['sparsity']:g}"
                           + (f" ε {r['tolerance']:g}" if r.get("tolerance") is not None else "")
                           + f" seed {r['seed']}: epoch {epoch} of {total_epochs} ({rid})")
            if job.get("error"):
                st.error(f"The grid stopped: {job['error']}")
            if state in ("lost", "failed") or job.get("failed"):
                with st.expander("Log"):
                    st.code(jobs.log_tail(results, job["job_id"]) or "(empty)")


if not password_ok():
    st.stop()

c1, c2 = st.columns(2)
datasets = ["digits", "synthetic", *available(data_dir())]
dataset = c1.selectbox("Dataset", datasets, help=f"Real datasets appear when their folder is in {data_dir()}.")
models = c2.multiselect("Models", MODELS[dataset], default=MODELS[dataset][:1])
data_settings = {}
if dataset in ("utkface", "fairface", "cifar100"):
    c1, c2, c3 = st.columns(3)
    data_settings["data_dir"] = str(data_dir())
    if dataset != "cifar100":
        data_settings["target"] = c1.selectbox("Target", ["race", "gender", "age"])
        data_settings["groups"] = c2.multiselect("Protected groups", ["race", "gender", "age"], default=["race"])
    data_settings["image_size"] = int(c3.number_input("Image size (pixels)", 16, 256, 64 if dataset != "cifar100"
                                                      else 32))
methods = st.multiselect("Methods", METHODS, default=list(METHODS), format_func=METHOD_LABELS.get)
c1, c2, c3 = st.columns(3)
sparsities_text = c1.text_input("Sparsities", "0.9, 0.95")
tolerances_text = c2.text_input("Tolerances ε (CEAG only)", "0.02")
seeds_text = c3.text_input("Seeds", "0")
c1, c2, c3 = st.columns(3)
dense_epochs = c1.number_input("Dense epochs", 1, limits.max_epochs, min(60, limits.max_epochs))
prune_epochs = c2.number_input("Pruning epochs", 0, limits.max_epochs, min(20, limits.max_epochs))
finetune_epochs = c3.number_input("Fine-tuning epochs", 0, limits.max_epochs, min(40, limits.max_epochs))

try:
    spec = GridSpec(datasets=(dataset,), models=tuple(models), methods=tuple(methods),
                    sparsities=tuple(parse_list(sparsities_text, float, "sparsities")),
                    tolerances=tuple(parse_list(tolerances_text, float, "tolerances")),
                    seeds=tuple(parse_list(seeds_text, int, "seeds")),
                    settings={"dense_epochs": int(dense_epochs), "prune_epochs": int(prune_epochs),
                              "finetune_epochs": int(finetune_epochs), **data_settings})
    configs = spec.configs(max_cells=limits.max_cells)
except ConfigError as err:
    st.error(str(err))
    spec, configs = None, []

if configs:
    cached = query("finished_ids", run_ids=[c.run_id for c in configs])
    st.info(f"This grid means **{len(configs)} runs**; {len(cached)} are already in the store and load from "
            f"the cache, {len(configs) - len(cached)} will train.")
    if st.button("Launch", type="primary", icon=":material/rocket_launch:"):
        try:
            jobs.check_limits(spec, limits, len(jobs.running_jobs(results)))
            job_id = jobs.launch(spec, results)
            st.success(f"Started job {job_id}. It runs in the background: closing this page does not stop it.")
        except (ConfigError, OSError) as err:
            st.error(str(err))

st.subheader("Jobs")
job_panel()
st.caption(f"Limits for grids launched here: {limits.max_cells} runs, {limits.max_epochs} epochs per run, "
           f"{limits.max_jobs} jobs at once (CEAG_MAX_GRID_CELLS, CEAG_MAX_EPOCHS, CEAG_MAX_JOBS).")
