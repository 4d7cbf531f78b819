"""RunConfig validation messages, tolerance handling and run identity."""

import json
import re

import pytest

from ceag.config.errors import ConfigError
from ceag.config.registry import DATASETS
from ceag.config.run_config import RunConfig, config_fields, from_dict
from ceag.config.vocabulary import METHODS, MODELS


def _msg(name, value, allowed):
    return re.escape(f"invalid {name}={value!r}: {allowed}")


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval(value):
    with pytest.raises(ConfigError, match=_msg("sparsity", value, "must be a number in [0.0, 1.0)")) as info:
        RunConfig(sparsity=value)
    assert info.value.field == "sparsity" and info.value.value == value


@pytest.mark.parametrize("method", ["ceag", "nft"])
@pytest.mark.parametrize("value", [-0.01, "0.02", float("nan"), True])
def test_bad_tolerance_is_rejected_for_every_method(method, value):
    # nft ignores the tolerance but a bad value is still a mistake worth reporting.
    with pytest.raises(ConfigError, match=_msg("tolerance", value, "must be a number in [0.0, 1.0]")):
        RunConfig(method=method, tolerance=value)


@pytest.mark.parametrize(("name", "options"), [("dataset", DATASETS), ("model", MODELS), ("method", METHODS)])
def test_unknown_choice_lists_valid_names(name, options):
    with pytest.raises(ConfigError, match=_msg(name, "nope", "must be one of " + ", ".join(options))):
        RunConfig(**{name: "nope"})


def test_unknown_key_in_from_dict_lists_known_settings():
    with pytest.raises(ConfigError, match=r"invalid spasity=0\.5: unknown setting; known: .*\bsparsity\b") as info:
        from_dict({"method": "nft", "spasity": 0.5})
    for name in config_fields():
        assert name in str(info.value)


def test_from_dict_rejects_non_objects():
    with pytest.raises(ConfigError, match="expected a JSON object"):
        from_dict(["method", "nft"])


@pytest.mark.parametrize("name", ["nesterov", "replay_buffer", "detach_overall", "dense_first_conv",
                                  "dense_last_layer"])
@pytest.mark.parametrize("value", [0, 1])
def test_bools_given_as_ints_are_rejected(name, value):
    with pytest.raises(ConfigError, match=_msg(name, value, "must be true or false")):
        RunConfig(**{name: value, "momentum": 0.9})


@pytest.mark.parametrize("name", ["seed", "dense_epochs", "buffer_size"])
def test_ints_given_as_bools_are_rejected(name):
    with pytest.raises(ConfigError, match=rf"invalid {name}=True: must be an integer >= "):
        RunConfig(**{name: True})


def test_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match=_msg("nesterov", True, "Nesterov momentum needs momentum > 0")):
        RunConfig(nesterov=True, momentum=0.0)
    assert RunConfig(nesterov=True, momentum=0.9).nesterov is True


def test_no_epochs_at_all_is_rejected():
    with pytest.raises(ConfigError, match="prune_epochs \\+ finetune_epochs must be >= 1"):
        RunConfig(prune_epochs=0, finetune_epochs=0)


def test_lr_milestones_must_increase():
    with pytest.raises(ConfigError, match=r"invalid lr_milestones=\(0\.75, 0\.5\): must be increasing"):
        RunConfig(lr_milestones=(0.75, 0.5))


@pytest.mark.parametrize("method", ["nft", "nft_es", "el_rb"])
def test_tolerance_is_dropped_for_methods_that_ignore_it(method):
    a = RunConfig(method=method, tolerance=0.01)
    b = RunConfig(method=method, tolerance=0.05)
    assert a.tolerance is None and b.tolerance is None
    assert a.run_id == b.run_id == RunConfig(method=method).run_id


def test_ceag_tolerance_defaults_and_is_part_of_the_run():
    assert RunConfig(method="ceag").tolerance == 0.02
    a = RunConfig(method="ceag", tolerance=0.01)
    assert a.tolerance == 0.01 and isinstance(a.tolerance, float)
    assert a.run_id != RunConfig(method="ceag", tolerance=0.05).run_id
    # an integer tolerance is the same run as the equal float
    assert RunConfig(method="ceag", tolerance=0).run_id == RunConfig(method="ceag", tolerance=0.0).run_id


def test_run_id_is_stable():
    cfg = RunConfig(dataset="synthetic", method="ceag", sparsity=0.9, tolerance=0.01, seed=3)
    same = RunConfig(dataset="synthetic", method="ceag", sparsity=0.9, tolerance=0.01, seed=3)
    assert cfg.run_id == same.run_id
    assert re.fullmatch(r"[0-9a-f]{16}", cfg.run_id)
    # equal values spelled differently are the same run
    assert RunConfig(lr=1).run_id == RunConfig(lr=1.0).run_id
    assert RunConfig(rare_groups=(8, 3, 8)).run_id == RunConfig(rare_groups=(3, 8)).run_id


@pytest.mark.parametrize(("name", "value"), [("seed", 1), ("sparsity", 0.9), ("model", "cnn"), ("method", "el_rb"),
                                             ("buffer_size", 41), ("lr_milestones", (0.5,))])
def test_changing_a_setting_changes_the_run_id(name, value):
    base = RunConfig()
    assert getattr(base, name) != value
    assert base.replace(**{name: value}).run_id != base.run_id


def test_device_is_not_part_of_the_run_id():
    cpu = RunConfig(device="cpu")
    assert cpu.run_id == RunConfig(device="auto").run_id == RunConfig(device="cuda").run_id
    assert "device" not in cpu.canonical()
    assert cpu.to_dict()["device"] == "cpu"
    assert from_dict(cpu.to_dict()).device == "cpu"  # kept in the saved config, just not in the id


def test_data_dir_is_not_part_of_the_run_id():
    elsewhere = RunConfig(data_dir="/mnt/data")
    assert elsewhere.run_id == RunConfig().run_id
    assert from_dict(elsewhere.to_dict()).data_dir == "/mnt/data"


def test_canonical_json_round_trip():
    cfg = RunConfig(dataset="synthetic", method="ceag", tolerance=0.03, rare_groups=(1, 2),
                    lr_milestones=(0.5, 0.75), device="cpu")
    text = json.dumps(cfg.to_dict())
    back = from_dict(json.loads(text))
    assert back == cfg
    assert back.run_id == cfg.run_id
    assert back.canonical_json() == cfg.canonical_json()
    assert json.loads(cfg.canonical_json()) == cfg.canonical()
    assert back.rare_groups == (1, 2) and back.lr_milestones == (0.5, 0.75)


def test_replace_validates():
    with pytest.raises(ConfigError, match="invalid sparsity=2"):
        RunConfig().replace(sparsity=2)
