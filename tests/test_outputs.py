"""Output folders: a rerun replaces its own files and removes its stale ones; nothing else is touched."""

import json
import os

import pytest

from engine.errors import CqError
from engine.outputs import MANIFEST, answer_folders, check_writable, check_writable_file, prepare_output, read_manifest


def write(output, name, text="cq"):
    path = output.path(name)
    path.write_text(text)
    return path


def test_a_rerun_removes_only_its_own_stale_files(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    with prepare_output(tmp_path, "query") as out:
        write(out, "01_counterfactual.png")
        write(out, "01/sample_000.png")
        write(out, "02_interventional.png")
    assert read_manifest(tmp_path) == {"query": ["01_counterfactual.png", "01/sample_000.png", "02_interventional.png"]}
    with prepare_output(tmp_path, "query") as out:
        write(out, "01_counterfactual.png", "again")
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "01_counterfactual.png", "mine.txt"]  # 01/ went, empty
    assert (tmp_path / "01_counterfactual.png").read_text() == "again" and (tmp_path / "mine.txt").read_text() == "the user's"


def test_a_file_cq_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "01_counterfactual.png").write_text("the user's")
    with pytest.raises(CqError, match=r"01_counterfactual\.png: already exists and was not written by cq; cq does not replace it"):
        with prepare_output(tmp_path, "query") as out:
            out.path("01_counterfactual.png")
    assert (tmp_path / "01_counterfactual.png").read_text() == "the user's"
    with prepare_output(tmp_path, "query") as out:  # a non-empty folder is fine where the names are free
        write(out, "02_observational.png")
    with prepare_output(tmp_path, "train", force=True) as out:  # --force replaces it
        write(out, "01_counterfactual.png", "cq's")
    assert read_manifest(tmp_path) == {"query": ["02_observational.png"], "train": ["01_counterfactual.png"]}


def test_another_jobs_files_are_protected(tmp_path):
    with prepare_output(tmp_path, "train") as out:
        write(out, "model.pt")
    with pytest.raises(CqError, match=r"model\.pt: already exists and was written by 'cq train'"):
        with prepare_output(tmp_path, "query") as out:
            out.path("model.pt")
    assert read_manifest(tmp_path) == {"train": ["model.pt"]}  # the failed job kept the manifest as it was


def test_a_failed_rerun_removes_nothing_and_lists_both_runs(tmp_path):
    with prepare_output(tmp_path, "query") as out:
        write(out, "a.png")
    with pytest.raises(KeyboardInterrupt):
        with prepare_output(tmp_path, "query") as out:
            write(out, "b.png")
            raise KeyboardInterrupt
    assert (tmp_path / "a.png").exists() and read_manifest(tmp_path) == {"query": ["b.png", "a.png"]}


def test_a_manifest_never_leads_outside_its_folder(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    folder = tmp_path / "answers"
    folder.mkdir()
    (folder / "linked").symlink_to(tmp_path)
    record = {"format": "cq-manifest", "version": 1, "jobs": {"query": ["../precious.txt", str(outside), "linked/precious.txt", "x.png"]}}
    (folder / MANIFEST).write_text(json.dumps(record))
    assert read_manifest(folder) == {"query": ["linked/precious.txt", "x.png"]}
    with prepare_output(folder, "query") as out:
        write(out, "y.png")
    assert outside.read_text() == "keep"
    (folder / MANIFEST).write_text("{not json")
    assert read_manifest(folder) == {}


def test_manifest_and_files_have_a_normal_files_mode(tmp_path):
    with prepare_output(tmp_path, "query") as out:
        write(out, "a.png")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / MANIFEST).stat().st_mode & 0o777 == 0o666 & ~mask


def test_out_must_be_a_writable_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CqError, match="is empty"):
        check_writable("")
    with pytest.raises(CqError, match=r"file: is a file, not a folder"):
        check_writable(tmp_path / "file")
    with pytest.raises(CqError, match=r"under .*file, which is a file"):
        check_writable(tmp_path / "file" / "deeper" / "run")
    with pytest.raises(CqError, match="is a folder; give a file name"):
        check_writable_file(tmp_path)
    assert check_writable(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checked, not made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe file is gone


def test_an_unwritable_folder_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CqError, match=r"cannot write into .*Permission denied"):
            check_writable(tmp_path / "run")
    finally:
        tmp_path.chmod(0o755)


def test_query_files_with_one_stem_get_their_own_folders(tmp_path):
    assert answer_folders(tmp_path, ["a/q.cq"]) == [tmp_path]
    names = [p.name for p in answer_folders(tmp_path, ["a/q.cq", "b/q.cq", "r.cq", "./r.cq", "x/a/q.cq", "../z/q.cq", "s.cq"])]
    assert names == ["a-q", "b-q", "r", "r-2", "x-a-q", "z-q", "s"]
