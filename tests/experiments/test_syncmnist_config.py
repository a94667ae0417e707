"""The typed SyncMNIST run configuration (issue 15 item 4): presets as the flags' defaults,
one place for every check, the saved form read back, and the shared checks of both training
commands; the attention picture as an ``rstg-fast`` subcommand."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from rstg_fast.cli import main
from rstg_fast.experiments.run_config import RunConfig, check_fields, parse_device
from rstg_fast.experiments.syncmnist.config import PRESETS, SyncMNISTConfig


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_values_are_the_defaults_and_overrides_win(preset):
    cfg = SyncMNISTConfig.preset_config(preset, lr=None, channels=8)
    expected = {**PRESETS[preset], "channels": 8}
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert cfg.preset == preset
    cfg.validate()
    assert cfg.out == f"runs/syncmnist-{preset}"


def test_field_types_are_declared_for_every_preset_value():
    hints = {f.name: f.type for f in dataclasses.fields(SyncMNISTConfig)}
    for values in PRESETS.values():
        for name, value in values.items():
            assert name in hints, name
            assert type(value).__name__ in str(hints[name]), (name, hints[name])


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("channels", 0, "--channels"),
        ("steps_per_epoch", -1, "--steps-per-epoch"),
        ("pretrain_steps", -3, "--pretrain-steps"),
        ("naming_pretrain_steps", -1, "--naming-pretrain-steps"),
        ("naming_channels", -1, "--naming-channels"),
        ("channels", 12, "--channels"),  # GroupNorm: 12 channels do not split into 8 groups
        ("naming_channels", 24, "--naming-channels"),
        ("lr", float("nan"), "--lr"),
        ("weight_decay", -1e-4, "--weight-decay"),
        ("seed", -1, "--seed"),
        ("digits", 11, "--digits"),
        ("input_norm", "layer", "--input-norm"),
        ("main_backbone", False, "--no-main-backbone"),  # without a naming backbone there is nothing left
        ("naming_augment", -1, "--naming-augment"),
        ("naming_augment", 3, "--naming-augment"),  # without a naming warm-up to augment
        ("naming_depth", 5, "--naming-depth"),
        ("naming_depth", 4, "--naming-depth"),  # without a naming backbone to deepen
        ("dtype", "float64", "--dtype"),
    ],
)
def test_validate_names_the_flag(field, value, flag):
    cfg = SyncMNISTConfig.preset_config("quick", **{field: value})
    with pytest.raises(ValueError, match=f"^{flag} "):
        cfg.validate()


def test_no_main_backbone_refuses_the_main_warm_up():
    cfg = SyncMNISTConfig.preset_config("quick", main_backbone=False, naming_pretrain_steps=5)
    with pytest.raises(ValueError, match="^--pretrain-steps 800 warms up the main backbone.*pass --pretrain-steps 0$"):
        cfg.validate()
    SyncMNISTConfig.preset_config("quick", main_backbone=False, naming_pretrain_steps=5, pretrain_steps=0).validate()


def test_saved_config_reads_back_and_ignores_unknown_keys():
    cfg = SyncMNISTConfig.preset_config("quick", seed=3)
    cfg.validate()
    saved = cfg.as_dict()
    assert SyncMNISTConfig.from_dict(saved) == cfg
    older = {k: v for k, v in saved.items() if k != "optimizer"} | {"a_removed_flag": 1}
    assert SyncMNISTConfig.from_dict(older).optimizer == "adamw"  # the default


def test_resume_differences_skip_what_does_not_change_the_maths():
    cfg = SyncMNISTConfig.preset_config("quick")
    saved = cfg.as_dict() | {"threads": 7, "out": "elsewhere", "lr": 5.0}
    assert cfg.resume_differences(saved) == {"lr": (5.0, cfg.lr)}
    older = {k: v for k, v in cfg.as_dict().items() if k != "model"}  # saved before --model existed
    assert cfg.resume_differences(older) == {}
    # saved before --naming-pretrain-steps (a preset field): the checkpoint's preset's value
    before_naming = {k: v for k, v in cfg.as_dict().items() if k != "naming_pretrain_steps"}
    assert cfg.resume_differences(before_naming) == {}
    naming = SyncMNISTConfig.preset_config("quick", naming_pretrain_steps=5)
    assert naming.resume_differences(before_naming) == {"naming_pretrain_steps": (0, 5)}
    # saved before --naming-channels: its default, the width of --channels
    before_width = {k: v for k, v in cfg.as_dict().items() if k != "naming_channels"}
    assert cfg.resume_differences(before_width) == {}
    # saved before --naming-depth: three convs, the backbone of every earlier run
    before_depth = {k: v for k, v in naming.as_dict().items() if k != "naming_depth"}
    assert naming.resume_differences(before_depth) == {}
    deeper = SyncMNISTConfig.preset_config("quick", naming_pretrain_steps=5, naming_depth=4)
    assert deeper.resume_differences(before_depth) == {"naming_depth": (3, 4)}
    # saved before --no-main-backbone: both backbones; leaving one out changes the model
    before_alone = {k: v for k, v in naming.as_dict().items() if k != "main_backbone"}
    assert naming.resume_differences(before_alone) == {}
    alone = SyncMNISTConfig.preset_config("quick", naming_pretrain_steps=5, pretrain_steps=0, main_backbone=False)
    assert alone.resume_differences(naming.as_dict()) == {"main_backbone": (True, False), "pretrain_steps": (800, 0)}
    conv = SyncMNISTConfig.preset_config("quick", model="conv_lstm")
    assert conv.resume_differences(older) == {"model": ("rstg", "conv_lstm")}


def test_shared_checks_work_on_a_namespace_and_the_base_config():
    import argparse

    with pytest.raises(ValueError, match="^--eval-chunk must be > 0"):
        check_fields(argparse.Namespace(eval_chunk=0), positive=("eval_chunk",))
    with pytest.raises(ValueError, match="^--momentum must be a finite number"):
        check_fields(argparse.Namespace(momentum=float("inf")), rates=("momentum",))
    base = RunConfig(out="x", epochs=1, batch_size=0, lr=1.0)
    with pytest.raises(ValueError, match="^--batch-size must be > 0"):
        base.validate()
    with pytest.raises(ValueError, match="^--device must be cpu, cuda or cuda:N"):
        parse_device("tpu")
    assert parse_device("auto").type in ("cpu", "cuda")


def test_attention_subcommand_refuses_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["syncmnist-attention", "--checkpoint", str(tmp_path / "no.pt"), "--out", str(tmp_path / "a.png")])
    assert exc.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("rstg-fast syncmnist-attention: error: --checkpoint")
    )
    assert not (tmp_path / "a.png").exists()


def test_attention_subcommand_without_matplotlib_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" raises ImportError
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["syncmnist-attention", "--checkpoint", str(ck), "--out", str(tmp_path / "a.png")])
    assert exc.value.code == 2
    assert "needs matplotlib" in capsys.readouterr().err
