"""``rstg-fast train-video`` end to end on a tiny on-disk dataset: smoke, exact resume,
gradient accumulation and two-process DDP (gloo) equivalences."""

from __future__ import annotations

import json
import os

import pytest
import torch
from interrupt_testing import kill_at, torchrun
from smth_testing import write_tiny_something

from rstg_fast.cli import main
from rstg_fast.experiments import video

try:
    import PIL  # noqa: F401

    HAVE_PIL = True
except ImportError:
    HAVE_PIL = False
pytestmark = pytest.mark.skipif(not HAVE_PIL, reason="Pillow (optional dependency) is needed to write/decode JPEGs")

TINY = ["--base-width", "4", "--blocks", "1", "1", "1", "1", "--num-frames", "4", "--crop-size", "32",
        "--train-scale", "32", "40", "--test-short-side", "32", "--node-dim", "8", "--message-dim", "8",
        "--iterations", "1", "--rstg-backend", "reference", "--workers", "0", "--no-progress", "--lr", "0.05"]

# 48 px crops: res4 is 3 x 3, the least the 3x3 grid of nodes needs
RSTG_SIZE = ["--crop-size", "48", "--train-scale", "48", "56", "--test-short-side", "48"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_something(str(tmp_path_factory.mktemp("smth")), train_videos=8, val_videos=4)


def train(data, out, *extra):
    args = ["train-video", "--data-root", data, "--out", str(out), *TINY, *extra]
    assert main(args) == 0
    return torch.load(os.path.join(out, "last.pt"), weights_only=True)


def records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_weights(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("placement", ["none", "res4"])
def test_smoke_train_then_evaluate_multiview(data, tmp_path, placement, capsys):
    out = tmp_path / "run"
    size = RSTG_SIZE
    state = train(data, out, "--arch", "i3d", "--placement", placement, "--epochs", "2", "--batch-size", "2",
                  "--accum-steps", "2", "--spatial-clips", "3", "--temporal-clips", "2", *size)
    assert state["epoch"] == 2 and state["global_step"] == 4 and state["config"]["placement"] == placement
    recs = records(out)
    assert [r["epoch"] for r in recs] == [0, 1]
    for r in recs:
        assert r["val"]["videos"] == 4 and 0 <= r["val"]["top1"] <= r["val"]["top5"] <= 100
        assert r["train_loss"] > 0
    capsys.readouterr()
    assert main(["train-video", "--data-root", data, "--out", str(out), *TINY, *size, "--eval-only"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["eval"]["videos"] == 4 and res["eval"]["top5"] == 100.0  # 4 classes: top-5 holds them all


def test_resume_is_exact(data, tmp_path):
    common = ["--arch", "c2d", "--placement", "none", "--epochs", "2", "--batch-size", "2", "--eval-every", "0"]
    full = train(data, tmp_path / "full", *common)  # 2 epochs x 4 steps
    part = train(data, tmp_path / "part", *common, "--max-steps", "6")  # stops mid-epoch 1
    assert (part["epoch"], part["step_in_epoch"], part["global_step"]) == (1, 2, 6)
    done = train(data, tmp_path / "part", *common)  # resumes from last.pt
    assert done["global_step"] == 8
    assert_same_run(done, full)
    # the mid-epoch stop logged that part of epoch 1; the resume replaced it by the whole epoch
    assert records(tmp_path / "part") == records(tmp_path / "full")


def assert_same_run(done, full):
    """Bitwise equal weights, momentum and metric history (the log is checked by the callers)."""
    assert_same_weights(done["model"], full["model"])
    for k, v in full["optimizer"]["state"].items():
        assert torch.equal(v["momentum_buffer"], done["optimizer"]["state"][k]["momentum_buffer"])
    assert done["history"] == full["history"] and done["pending"] is None and done["running"] == [0.0, 0.0, 0.0]


# 2 epochs x 4 steps, a checkpoint every step, an evaluation after each epoch
KILL = ["--arch", "c2d", "--placement", "none", "--epochs", "2", "--batch-size", "2", "--ckpt-every", "1"]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return train(data, out, *KILL), records(out)


# topk_correct is called once per training step and once per evaluation batch (one here), so its
# 8th call is in step 7 (epoch 1), after the checkpoint of step 6; write_jsonl's first call is
# the (empty) log at the start, its 2nd the log after epoch 0's checkpoint.
@pytest.mark.parametrize(
    ("name", "call", "at"),
    [("topk_correct", 8, (1, 2, 6)), ("evaluate", 1, (1, 0, 4)), ("write_jsonl", 2, (1, 0, 4))],
    ids=["mid-epoch", "during-evaluation", "before-log-write"],
)
def test_kill_then_resume_is_exact(data, tmp_path, monkeypatch, uninterrupted, name, call, at):
    full, full_records = uninterrupted
    with monkeypatch.context() as m:
        kill_at(m, video, name, call)
        with pytest.raises(KeyboardInterrupt):
            train(data, tmp_path, *KILL)
    killed = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (killed["epoch"], killed["step_in_epoch"], killed["global_step"]) == at
    assert (killed["pending"] is not None) == (name == "evaluate")  # epoch 0's record awaits its evaluation
    assert killed["running"][2] == (4 if name == "topk_correct" else 0)  # videos of the split epoch so far
    done = train(data, tmp_path, *KILL)
    assert_same_run(done, full)
    assert records(tmp_path) == full_records == full["history"]
    assert [r["epoch"] for r in full_records] == [0, 1] and all("val" in r for r in full_records)


def test_resume_refuses_another_model(data, tmp_path, capsys):
    train(data, tmp_path, "--arch", "c2d", "--placement", "none", "--epochs", "1", "--batch-size", "4",
          "--eval-every", "0")
    capsys.readouterr()
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(tmp_path), *TINY, "--arch", "i3d",
                                "--placement", "none", "--epochs", "1", "--batch-size", "4"])
    assert "error: --out" in line and "'arch': ('c2d', 'i3d')" in line and "--restart" in line


EQUIV = ["--arch", "i3d", "--placement", "none", "--epochs", "1", "--freeze-bn", "--dropout", "0",
         "--eval-every", "0"]


def test_gradient_accumulation_matches_a_big_batch(data, tmp_path):
    # frozen BN and no dropout: the loss of 4 samples is exactly the mean of two halves
    big = train(data, tmp_path / "big", *EQUIV, "--batch-size", "4")
    acc = train(data, tmp_path / "acc", *EQUIV, "--batch-size", "2", "--accum-steps", "2")
    assert big["global_step"] == acc["global_step"] == 2
    assert_same_weights(acc["model"], big["model"], exact=False)


def test_two_process_ddp_matches_one_process(data, tmp_path):
    # with an RSTG-to-map block after res4 (48 px crops: res4 is 3 x 3) so DDP sees its parameters
    rstg = [*RSTG_SIZE, "--placement", "res4"]
    one = train(data, tmp_path / "one", *EQUIV, *rstg, "--batch-size", "4")
    out = tmp_path / "ddp"
    proc = torchrun(["train-video", "--data-root", data, "--out", str(out), *TINY, *EQUIV, *rstg,
                     "--batch-size", "2", "--device", "cpu"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out / "last.pt", weights_only=True)
    assert ddp["global_step"] == 2
    assert_same_weights(ddp["model"], one["model"], exact=False)
    assert records(out)[-1]["train_loss"] == pytest.approx(records(tmp_path / "one")[-1]["train_loss"], rel=1e-5)


def test_bf16_autocast_trains(data, tmp_path):
    state = train(data, tmp_path, "--arch", "i3d", "--placement", "none", "--epochs", "1", "--batch-size", "4",
                  "--amp", "bf16", "--eval-every", "0")
    assert state["global_step"] == 2
    assert all(v.dtype == torch.float32 or not v.is_floating_point() for v in state["model"].values())
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert records(tmp_path)[-1]["val"]["videos"] == 4


def test_pretrained_2d_weights_are_inflated_into_i3d(data, tmp_path, capsys):
    from video_testing import randomise_bn, to_2d_state_dict

    from rstg_fast.video import VideoClassifier, load_resnet_weights

    src = VideoClassifier("c2d", 1000, base_width=4, blocks=(1, 1, 1, 1))
    randomise_bn(src)
    torch.save(to_2d_state_dict(src), tmp_path / "r50.pt")
    # lr 0 and frozen BN: the checkpoint holds exactly what was loaded
    state = train(data, tmp_path / "run", "--arch", "i3d", "--placement", "none", "--epochs", "1", "--batch-size", "4",
                  "--lr", "0", "--freeze-bn", "--eval-every", "0", "--pretrained", str(tmp_path / "r50.pt"))
    assert "inflated" in capsys.readouterr().out
    want = VideoClassifier("i3d", 4, base_width=4, blocks=(1, 1, 1, 1))
    load_resnet_weights(want, tmp_path / "r50.pt")
    for k, v in want.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(state["model"][k], v), k


def usage_error(capsys, argv) -> str:
    """Run ``argv``: exit code 2 and one error line on stderr (returned), nothing else."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rstg-fast train-video: error: "), lines
    return lines[0]


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--eval-chunk", "0"), ("--lr", "-1"),
                                             ("--accum-steps", "0"), ("--lr", "nan"), ("--weight-decay", "inf"),
                                             ("--momentum", "-0.9"), ("--clip-grad", "nan"), ("--std", "0"),
                                             ("--train-scale", "20"), ("--test-short-side", "16"),
                                             ("--placement", "res9"), ("--node-dim", "0"), ("--heads", "3"),
                                             ("--base-width", "0"), ("--frame-template", "{}{}.jpg"),
                                             ("--rstg-backend", "nope"), ("--dropout", "1.5")])
def test_bad_arguments_name_the_flag(data, tmp_path, capsys, flag, value):
    nargs = {"--std": 3, "--train-scale": 2}.get(flag, 1)  # --std takes three numbers, --train-scale two
    out = tmp_path / "run"
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(out), *TINY, *RSTG_SIZE,
                                "--placement", "res4", flag, *[value] * nargs])
    assert f"error: {flag}" in line
    assert not out.exists()  # refused before any work or checkpoint


@pytest.mark.parametrize("missing", ["data-root", "annotations", "labels-file", "pretrained", "checkpoint"])
def test_missing_paths_are_named(data, tmp_path, capsys, missing):
    import shutil

    root, ann = data, data
    extra = []
    if missing == "data-root":
        root = str(tmp_path / "no" / "frames")
    elif missing == "annotations":
        ann = str(tmp_path / "no-annotations")
        extra = ["--annotations", ann]
    elif missing == "labels-file":
        ann = str(tmp_path / "ann")
        shutil.copytree(data, ann, ignore=lambda d, names: [n for n in names if not n.endswith(".csv")])
        os.remove(os.path.join(ann, "something-something-v1-labels.csv"))
        extra = ["--annotations", ann]
    elif missing == "pretrained":
        extra = ["--pretrained", str(tmp_path / "r50.pt")]
    else:
        extra = ["--eval-only", "--checkpoint", str(tmp_path / "best.pt")]
    out = tmp_path / "run"
    line = usage_error(capsys, ["train-video", "--data-root", root, "--out", str(out), *TINY,
                                "--placement", "none", *extra])
    labels = os.path.join(ann, "something-something-v1-labels.csv")
    want = {"data-root": root, "annotations": ann, "labels-file": labels}.get(missing) or extra[-1]
    flag = "--annotations" if missing == "labels-file" else f"--{missing}"
    assert f"error: {flag}" in line and want in line
    assert not out.exists()


def test_eval_only_without_a_checkpoint_names_it(data, tmp_path, capsys):
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(tmp_path), *TINY,
                                "--placement", "none", "--eval-only"])
    assert "--eval-only" in line and str(tmp_path / "last.pt") in line


@pytest.mark.parametrize("case", ["device-cuda", "backend-cuda", "backend-cpu-fp16", "backend-cpu-bf16"])
def test_flags_that_cannot_work_are_refused_before_any_work(data, tmp_path, capsys, monkeypatch, case):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    flags = {"device-cuda": ["--device", "cuda"],
             "backend-cuda": ["--rstg-backend", "cuda"],
             "backend-cpu-fp16": ["--rstg-backend", "cpu", "--amp", "fp16"],
             "backend-cpu-bf16": ["--rstg-backend", "cpu", "--amp", "bf16"]}[case]
    out = tmp_path / "run"
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(out), *TINY, *RSTG_SIZE,
                                "--placement", "res4", *flags])
    assert f"error: {flags[0]} {flags[1]}" in line
    if case == "device-cuda":
        assert "CUDA is not available" in line
    assert not out.exists()


def strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_a_diverged_run_stops_with_a_clear_error(data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train-video", "--data-root", data, "--out", str(out), *TINY, "--arch", "c2d",
                 "--placement", "none", "--epochs", "2", "--batch-size", "2", "--ckpt-every", "1",
                 "--lr", "1e30"])
    assert code == 1
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err and len(err) == 1, captured.err
    assert err[0].startswith("rstg-fast train-video: error: the training loss became nan")
    assert "--lr" in err[0] and str(out / "last.pt") in err[0]
    assert "top1" not in captured.out  # no accuracy reported
    for line in (out / "metrics.jsonl").read_text().splitlines():
        strict_json(line)
    state = torch.load(out / "last.pt", weights_only=True)  # the last good state, before the nan step
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_fp16_on_a_cpu_warns_once(data, tmp_path, capsys):
    train(data, tmp_path, "--arch", "c2d", "--placement", "none", "--epochs", "1", "--batch-size", "4",
          "--max-steps", "1", "--eval-every", "0", "--amp", "fp16", "--device", "cpu")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --amp fp16 on a CPU") and "slow" in err[0]


def test_a_batch_larger_than_the_data_names_the_flags(data, tmp_path, capsys):
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(tmp_path), *TINY,
                                "--placement", "none", "--batch-size", "4", "--accum-steps", "3"])
    assert "error: --batch-size 4 x 1 processes x --accum-steps 3 = 12 videos per step" in line


def test_a_damaged_or_unfitting_pretrained_file_is_one_line(data, tmp_path, capsys):
    bad = tmp_path / "r50.pt"
    bad.write_bytes(b"")
    argv = ["train-video", "--data-root", data, "--out", str(tmp_path / "run"), *TINY, "--placement", "none",
            "--epochs", "1", "--pretrained", str(bad)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rstg-fast train-video: error: weights file {bad} cannot be read")
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, bad)  # readable, but not this model's weights
    line = usage_error(capsys, argv)
    assert line.startswith(f"rstg-fast train-video: error: --pretrained {bad}: ")


def test_check_args_builds_every_model_option(data, tmp_path):
    """check_args builds a throwaway model to check widths and heads: it must accept every
    valid option (the meta device could not build positional maps)."""
    import argparse

    parser = argparse.ArgumentParser()
    video.add_arguments(parser)
    args = parser.parse_args(["--data-root", data, "--out", str(tmp_path), *TINY, *RSTG_SIZE, "--placement",
                              "res4+vec", "--positional", "--heads", "2", "--pool2"])
    state = torch.get_rng_state()
    video.check_args(args)
    assert args.clip.crop_size == 48
    assert torch.equal(torch.get_rng_state(), state)  # the throwaway model draws nothing from the run's RNG


def test_shared_flag_spellings_with_syncmnist(data, tmp_path, capsys):
    # --dtype / --overwrite / --progress / --resume, as `rstg-fast syncmnist` spells them
    out = tmp_path / "run"
    base = ["--arch", "c2d", "--placement", "none", "--epochs", "1", "--eval-every", "0", "--progress", "none"]
    train(data, out, *base, "--dtype", "float32")
    assert capsys.readouterr().err.count("epoch 0") == 0  # --progress none: no bar
    first = torch.load(os.path.join(out, "last.pt"), weights_only=True)["global_step"]
    train(data, out, *base, "--overwrite", "--epochs", "1")  # starts over, like --restart
    assert torch.load(os.path.join(out, "last.pt"), weights_only=True)["global_step"] == first
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(out), *TINY, *base,
                                "--dtype", "float16", "--amp", "bf16"])
    assert "--dtype float16 contradicts --amp bf16" in line
    line = usage_error(capsys, ["train-video", "--data-root", data, "--out", str(out), *TINY, *base,
                                "--resume", "--overwrite"])
    assert "--resume contradicts" in line
