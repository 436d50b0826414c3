"""Bad input to cq, kind by kind: one message naming the place and what is valid, exit 2, no traceback, no file lost.

Most cases run ``cli.main`` in this process (seconds); Ctrl-C and a closed pipe need a real process.
"""

import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import cli
from engine.errors import CheckpointError, DataError
from engine.files import MAX_NPZ_BYTES
from engine.worlds.dsprites import data, oracles, render as dsprites
from tests.conftest import ROOT


def run(*argv) -> tuple[int, str]:
    """cq in this process: (exit status, stderr); argparse's own errors exit 2 as well."""
    stderr = io.StringIO()
    saved, sys.stderr = sys.stderr, stderr
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:
        sys.stderr = saved
    assert "Traceback" not in stderr.getvalue()
    return code, stderr.getvalue()


def refused(*argv) -> str:
    code, stderr = run(*argv)
    assert code == 2, stderr
    return stderr


# ---- 3. npz label sets ----------------------------------------------------------------------


def label_set(n=5, **changes) -> dict:
    arrays = {f"label_{f}": np.arange(n) % dsprites.SIZES[f] for f in dsprites.FACTORS}
    arrays.update(dag_hash=np.array("abc"), seed=np.array(0))
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize("change, message", [
    ({"label_x": np.array([0, 1, 32, 3, 4])}, r"the array 'label_x' holds 32 at row 2; 'x' takes class indices 0 to 31"),
    ({"label_scale": np.array([0, -1, 0, 0, 0])}, r"the array 'label_scale' holds -1 at row 1; 'scale' takes class indices 0 to 5"),
    ({"label_y": np.arange(4)}, r"the array 'label_y' has shape \(4,\); every factor needs one label per unit, shape \(5,\)"),
    ({"label_y": np.zeros((5, 2), np.int64)}, r"the array 'label_y' has shape \(5, 2\)"),
    ({"label_shape": np.array([0.0, 1.7, 2.0, 0.0, 1.0])}, r"the array 'label_shape' holds float64 values; 'shape' labels are whole-number class"),
    ({"seed": np.array([1, 2])}, r"the array 'seed' has shape \(2,\)"),
])
def test_bad_labels_name_the_file_and_array(tmp_path, change, message):
    np.savez_compressed(tmp_path / "labels.npz", **label_set(**change))
    with pytest.raises(DataError, match=rf"labels\.npz: {message}"):
        data.load(tmp_path / "labels.npz")


def test_a_good_label_set_loads(tmp_path):
    np.savez_compressed(tmp_path / "labels.npz", **label_set())
    assert len(data.load(tmp_path / "labels.npz")) == 5


def test_corrupt_truncated_and_lying_archives_are_refused_without_reading_them(tmp_path):
    np.savez_compressed(tmp_path / "good.npz", **label_set(n=5000))
    raw = bytearray((tmp_path / "good.npz").read_bytes())
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with zipfile.ZipFile(tmp_path / "good.npz") as zf:
        info = zf.getinfo("label_orientation.npy")
    body = info.header_offset + 30 + len(info.filename) + len(info.extra) + 40
    raw[body:body + 16] = bytes(16)  # garble the deflate stream
    (tmp_path / "garbled.npz").write_bytes(bytes(raw))
    # 38 GiB declared: an npy header of (5,100,000,000,) int64 over a few bytes of data
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (5_100_000_000,)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("label_x.npy", header.getvalue() + bytes(64))
    for name, message in [("cut", "not a readable npz archive"), ("garbled", "not a readable npz archive"),
                          ("huge", r"the array 'label_x' declares shape \(5100000000,\) of int64 \(40,800,000,000 bytes\) but the archive holds 64")]:
        with pytest.raises(DataError, match=rf"{name}\.npz: {message}"):
            data.load(tmp_path / f"{name}.npz")
    assert MAX_NPZ_BYTES < 40_800_000_000


def test_data_check_of_a_bad_file_is_one_message(tmp_path):
    np.savez_compressed(tmp_path / "labels.npz", **label_set(label_x=np.full(5, 99)))
    assert "labels.npz: the array 'label_x' holds 99 at row 0" in refused("data", "check", "--data", tmp_path / "labels.npz")


# ---- 2. oracles.pt ---------------------------------------------------------------------------


def saved_oracles(tmp_path, change=None):
    oracles.save_oracles(oracles.Oracles(oracles.OracleConfig(width=2)), tmp_path)
    if change:
        state = torch.load(tmp_path / oracles.FILENAME, weights_only=True)
        change(state)
        torch.save(state, tmp_path / oracles.FILENAME)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["config"].update(width=100_000), r"'config\.width' must be a whole number from 1 to 1,024, got 100000"),
    (lambda s: s["config"].update(width=4), r"its weights do not fit the oracle nets \('.*' is \[2, 1, 4, 4\], the nets take \[4, 1, 4, 4\]\)"),
    (lambda s: s.update(config="small"), r"'config' must be a dict, got str"),
    (lambda s: s.update(state_dict="weights"), r"'state_dict' must be a dict of tensors, got str"),
    (lambda s: s["state_dict"]["nets.x.net.0.weight"].view(-1).__setitem__(0, float("nan")), r"the tensor 'state_dict\.nets\.x\.net\.0\.weight' holds NaN"),
    (lambda s: s.update(metrics={"shape_accuracy": "high"}), r"'metrics' must be a dict of numbers"),
])
def test_bad_oracles_are_a_checkpoint_error(tmp_path, change, message):
    saved_oracles(tmp_path, change)
    with pytest.raises(CheckpointError, match=rf"oracles\.pt: {message}.*cq train-oracles"):
        oracles.load_oracles(tmp_path)


def test_good_oracles_load(tmp_path):
    saved_oracles(tmp_path)
    assert oracles.load_oracles(tmp_path).config.width == 2


# ---- 4. lost work, 5. unwritable --out ---------------------------------------------------------


def test_train_never_silently_replaces_a_model(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights of another DAG")
    message = refused("train", "--out", tmp_path, "--n", 100)
    assert "model.pt: a trained model is already there; --resume continues its run, --force replaces it" in message
    assert (tmp_path / "model.pt").read_bytes() == b"weights of another DAG"


@pytest.mark.parametrize("command", [
    ["train", "--n", 100, "--out"],
    ["data", "resample", "--n", 100, "--out"],
    ["dag", "draw", "dags/dsprites.yaml", "--out"],
])
def test_an_out_under_a_file_is_refused_before_any_work(tmp_path, command):
    (tmp_path / "file").write_text("keep")
    started = time.perf_counter()
    assert "which is a file, not a folder" in refused(*command, tmp_path / "file" / "run" / "x.npz")
    assert time.perf_counter() - started < 10 and (tmp_path / "file").read_text() == "keep"


def test_train_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("keep")
    assert "run: is a file, not a folder; give a folder for --out" in refused("train", "--out", tmp_path / "run")


def test_resample_will_not_overwrite_its_labels_with_their_preview(tmp_path):
    message = refused("data", "resample", "--n", 100, "--out", tmp_path / "labels.png")
    assert "labels.png: the labels would be overwritten by their preview" in message and "--out" in message
    assert list(tmp_path.iterdir()) == []


def test_resample_will_not_overwrite_a_users_file(tmp_path):
    (tmp_path / "mine.png").write_bytes(b"my picture")
    assert "mine.png: already exists and was not written by cq" in refused("data", "resample", "--n", 100, "--out", tmp_path / "mine.npz")
    assert (tmp_path / "mine.png").read_bytes() == b"my picture" and not (tmp_path / "mine.npz").exists()


@pytest.mark.parametrize("command", [["train"], ["data", "resample"], ["dag", "draw", "dags/dsprites.yaml"]])
def test_an_empty_out_is_refused(command):
    assert "--out: expected a path, got ''" in refused(*command, "--out", "")


def test_files_written_through_a_temporary_file_have_a_normal_mode(tmp_path):
    from engine.images import save_png

    mask = os.umask(0)
    os.umask(mask)
    labels = data.LabelSet({f: np.zeros(3, np.int64) for f in dsprites.FACTORS}, "abc", 0)
    data.save(labels, tmp_path / "labels.npz")
    save_png(np.zeros((4, 4)), tmp_path / "p.png")
    for name in ("labels.npz", "p.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


# ---- 6. range-checked flags --------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("--seed", -1, "whole number >= 0 (at most 4,294,967,295)"),
    ("--seed", 2**32, "whole number >= 0 (at most 4,294,967,295)"),
    ("--workers", -1, "whole number >= 0 (at most 256)"),
    ("--threads", -1, "whole number >= 0 (at most 1,024)"),
    ("--threads", 1.5, "whole number >= 0"),
    ("--n", "1e9", "whole number >= 1 (at most 10,000,000)"),
    ("--batch-size", 10**7, "at most 65,536"),
])
def test_out_of_range_flags_are_one_message(tmp_path, flag, value, message):
    assert message in refused("train", "--out", tmp_path / "never", flag, value)
    assert not (tmp_path / "never").exists()


def test_whole_numbers_may_be_written_in_scientific_notation():
    assert cli.positive("2e5") == 200_000 and cli.seed("0") == 0


def test_resume_says_which_settings_the_checkpoint_keeps(tmp_path):
    from engine.learn.train import TrainConfig, resume_from
    from tests.learn.test_checkpoint import save_tiny

    dag, _ = save_tiny(tmp_path / "model.pt")
    lines = []
    _, config = resume_from(tmp_path / "model.pt", dag, TrainConfig(dag.path, str(tmp_path), seed=7), log=lines.append)
    assert config.seed == 0 and "the checkpoint's settings replace this run's: seed 0 (not 7)" in lines


# ---- 7. Ctrl-C and closed pipes ------------------------------------------------------------------


def test_ctrl_c_while_starting_is_one_line():
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "dag", "show", "dags/dsprites.yaml"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # importing torch takes longer than this
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("finished before the signal")
    assert process.returncode == 130 and "Traceback" not in stderr and stderr.strip() == "cq: interrupted"


def test_a_closed_pipe_ends_quietly():
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "dag", "show", "dags/dsprites.yaml"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like head, gone before cq writes
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert process.returncode == 141 and stderr == ""
