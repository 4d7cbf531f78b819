"""Launch: a grid from the browser, run in the background; live progress with cancel."""

import streamlit as st

from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.config.presets import preset
from ceag.config.vocabulary import CONSTRAINT_DATA, CRITERIA, GRID_METHODS, METHOD_LABELS, METHODS, PRUNING
from ceag.datasets import DatasetError, available
from ceag.datasets.checks import custom_columns
from ceag.grid import jobs
from ceag.present.preset_notes import utkface_cpu_note
from ceag.present.words import CRITERION_HELP, FAIRGRAPE_HELP, PRUNING_HELP, criterion_label
from ceag.run.data import resolve_all
from dashboard import _state
from dashboard import _store as store
from dashboard._forms import NumberFields
from dashboard._jobs import job_card
from dashboard._shared import data_dir, results_dir

MODELS = {"digits": ["mlp", "cnn", "cnn_fc", "resnet20"], "synthetic": ["mlp"],
          "utkface": ["cnn", "cnn_small", "cnn_fc", "mobilenet_v2", "resnet18", "resnet34"],
          "fairface": ["cnn", "cnn_small", "cnn_fc", "resnet18", "resnet34", "mobilenet_v2"],
          "cifar100": ["resnet20", "resnet56", "cnn", "cnn_fc"],
          "custom": ["cnn", "cnn_small", "cnn_fc", "mobilenet_v2", "resnet18", "resnet34"]}

_state.restore()
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
    listed = jobs.list_jobs(results, limit=5)
    if not listed:
        st.caption("No jobs yet.")
        return
    for job in listed:
        job_card(job, results)


if not password_ok():
    st.stop()

c1, c2 = st.columns(2)
datasets = ["digits", "synthetic", *available(data_dir())]
dataset = _state.widget(c1.selectbox, "launch_dataset", "Dataset", default="digits", options=datasets,
                        help=f"Real datasets appear when their folder is in {data_dir()}.")
models = _state.widget(c2.multiselect, "launch_models", "Models", default=MODELS[dataset][:1], options=MODELS[dataset])
numbers = NumberFields()
data_settings = {}
if dataset in ("utkface", "fairface", "cifar100", "custom"):
    c1, c2, c3 = st.columns(3)
    data_settings["data_dir"] = str(data_dir())
    try:
        attributes = custom_columns(data_dir()) if dataset == "custom" else ["race", "gender", "age"]
    except DatasetError as err:
        st.error(str(err))
        st.stop()
    if dataset != "cifar100":
        data_settings["target"] = _state.widget(c1.selectbox, "launch_target", "Target",
                                                default=attributes[0], options=attributes)
        data_settings["groups"] = _state.widget(c2.multiselect, "launch_groups", "Protected groups",
                                                default=attributes[-1:] if dataset == "custom" else ["race"],
                                                options=attributes)
    data_settings["image_size"] = numbers.field(c3.text_input, "launch_image_size", "Image size (pixels)",
                                                default=64 if dataset != "cifar100" else 32, kind=int, lo=16, hi=256)
if dataset == "utkface":
    with st.expander("On a laptop CPU: the **utkface_cpu** presets"):
        st.markdown(utkface_cpu_note(preset("utkface_cpu")))
        st.caption("utkface_cpu_intersectional: the same with race × gender (10 groups) as the protected groups.")
        for name, column in zip(("utkface_cpu", "utkface_cpu_intersectional"), st.columns(2), strict=True):
            if column.button(f"Launch {name}", key=f"launch_{name}"):
                try:
                    cpu = preset(name).with_settings({"data_dir": str(data_dir())})
                    jobs.check_limits(cpu, limits, len(jobs.running_jobs(results)))
                    st.success(f"Started job {jobs.launch(cpu, results)}; its runs appear below.")
                except (ConfigError, OSError) as err:
                    st.error(str(err))
c1, c2 = st.columns([3, 1])
methods = _state.widget(c1.multiselect, "launch_methods", "Methods", default=list(GRID_METHODS),
                        options=list(METHODS), format_func=METHOD_LABELS.get,
                        help="CEAG+VS: CEAG's tolerance selected on validation among the grid's tolerances at or "
                             f"below each ε (it trains those CEAG runs). {FAIRGRAPE_HELP}")
constraint_data = _state.widget(c2.selectbox, "launch_constraint_data", "CEAG multipliers from", default="train",
                                options=list(CONSTRAINT_DATA),
                                format_func={"train": "training data", "val": "validation (held out)"}.get,
                                help="Held-out multipliers: the dual step reads validation batches; the model still "
                                     "learns on the training data.")
if constraint_data != "train":
    data_settings["constraint_data"] = constraint_data
c1, c2 = st.columns([3, 1])
criteria = _state.widget(c1.multiselect, "launch_criteria", "Pruning criteria", default=["magnitude"],
                         options=list(CRITERIA), format_func=criterion_label,
                         help=f"{CRITERION_HELP} Every method but FairGRAPE runs once per criterion chosen.")
pruning = _state.widget(c2.selectbox, "launch_pruning", "Pruning", default="unstructured", options=list(PRUNING),
                        help=PRUNING_HELP)
if pruning != "unstructured":
    data_settings["pruning"] = pruning
c1, c2, c3 = st.columns(3)
sparsities_text = _state.widget(c1.text_input, "launch_sparsities", "Sparsities", default="0.9, 0.95")
tolerances_text = _state.widget(c2.text_input, "launch_tolerances", "Tolerances ε (CEAG, CEAG+VS)", default="0.02")
seeds_text = _state.widget(c3.text_input, "launch_seeds", "Seeds", default="0")
c1, c2, c3 = st.columns(3)
cap = limits.max_epochs
dense_epochs = numbers.field(c1.text_input, "launch_dense_epochs", "Dense epochs", default=min(60, cap), kind=int,
                             lo=1, hi=cap)
prune_epochs = numbers.field(c2.text_input, "launch_prune_epochs", "Pruning epochs", default=min(20, cap), kind=int,
                             lo=0, hi=cap)
finetune_epochs = numbers.field(c3.text_input, "launch_finetune_epochs", "Fine-tuning epochs", default=min(40, cap),
                                kind=int, lo=0, hi=cap)

spec, configs = None, []
for message in numbers.errors:  # an invalid number blocks the launch; the others are still checked below
    st.error(message)
try:
    spec = GridSpec(datasets=(dataset,), models=tuple(models), methods=tuple(methods), criteria=tuple(criteria),
                    sparsities=tuple(parse_list(sparsities_text, float, "sparsities")),
                    tolerances=tuple(parse_list(tolerances_text, float, "tolerances")),
                    seeds=tuple(parse_list(seeds_text, int, "seeds")),
                    settings={"dense_epochs": dense_epochs or 1, "prune_epochs": prune_epochs or 0,
                              "finetune_epochs": finetune_epochs or 0,
                              **{k: v for k, v in data_settings.items() if v is not None}})
    if not numbers.errors:
        configs = spec.configs(max_cells=limits.max_cells)
except ConfigError as err:
    st.error(str(err))
    spec, configs = None, []

if configs:
    try:  # the data's fingerprint is part of each run id
        configs = resolve_all(configs, results)
    except DatasetError as err:
        st.error(str(err))
        st.stop()
    cached = store.finished_ids(run_ids=[c.run_id for c in configs])
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
