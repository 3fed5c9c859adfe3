"""Libraries' chatter stays off the terminal and out of --json: libmpg123's warnings on a
truncated MP3 (C code writing to fd 2, through libsndfile) and the text model loader's
"Loading weights" bar go to the log, which ``--verbose`` shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.indexer.corpus import truncated_mp3
from tests.indexer.documents import cyclic_form_pdf

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.models


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register_bundled_torch"}
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        env.pop(name, None)  # as a user's shell has them
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_truncated_mp3_and_model_loading_print_nothing_unless_verbose(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    mp3 = truncated_mp3(files / "cut.mp3")
    (files / "note.txt").write_text("a quiet river under the old stone bridge")

    quiet = _cli("index", str(files), "--db", str(tmp_path / "db"), "--model", "bundled-torch",
                 "--workers", "1", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # neither "Warning: Xing stream size ..." nor "Loading weights"
    report = json.loads(quiet.stdout)
    assert report["by_modality"]["audio"]["added"] == 1 and report["skipped"] == []

    # decoding a query part, in this process (the index records the encoder as "bundled")
    query = _cli("search", "--audio", str(mp3), "--db", str(tmp_path / "db"), "--json")
    assert query.returncode == 0, query.stderr
    assert query.stderr == ""
    assert json.loads(query.stdout)["results"][0]["path"] == str(mp3)

    loud = _cli("index", str(files), "--db", str(tmp_path / "db2"), "--model", "bundled-torch",
                "--workers", "1", "--json", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "Xing stream size off by more than 1%" in loud.stderr
    assert "Loading weights" in loud.stderr
    assert json.loads(loud.stdout)["by_modality"]["audio"]["added"] == 1  # stdout: JSON only


@pytest.mark.parametrize("verbose", [False, True])
def test_pdf_reader_warnings_go_to_the_log(tmp_path, verbose):
    """pypdf logs a warning per oddity it meets (a cyclic form here, "EOF marker not found"
    ...): they reached the terminal, one line each, through the progress bar and report."""
    files = tmp_path / "files"
    files.mkdir()
    cyclic_form_pdf(files / "loop.pdf", "a loop of lighthouse words")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register"}
    run = subprocess.run(
        [sys.executable, "-m", "cli", "index", str(files), "--db", str(tmp_path / "db"),
         "--model", "fake", "--workers", "1", "--json", *(["--verbose"] if verbose else [])],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["by_modality"]["text"]["added"] == 1
    assert ("Detected cyclic form XObject reference" in run.stderr) is verbose, run.stderr
