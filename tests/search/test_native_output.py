"""Text C code writes to fd 2 goes to the log, and fd 2 is the same file again afterwards."""

from __future__ import annotations

import logging
import os
import threading

from search.native_output import native_stderr_to_log
from tests.indexer.corpus import truncated_mp3

LOGGER = "search.native_output"


def test_fd2_text_goes_to_the_log_and_fd2_comes_back(capfd, caplog):
    before = os.fstat(2).st_ino
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        with native_stderr_to_log():
            os.write(2, b"Warning: from C\n")
            with native_stderr_to_log():  # nested: one capture
                os.write(2, b"inner line\n")
        os.write(2, b"after\n")
    assert os.fstat(2).st_ino == before
    assert capfd.readouterr().err == "after\n"
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "Warning: from C", "inner line"
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == LOGGER)


def test_threads_capturing_at_once_leave_fd2_as_it_was(capfd, caplog):
    before = os.fstat(2).st_ino
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            with native_stderr_to_log():
                os.write(2, f"thread {i}\n".encode())

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert os.fstat(2).st_ino == before
    assert capfd.readouterr().err == ""
    assert len([r for r in caplog.records if r.name == LOGGER]) == 200


def test_a_truncated_mp3_decodes_without_writing_to_stderr(tmp_path, capfd, caplog):
    from search.audio import audio_duration, decode_audio_bytes, load_audio

    cut = truncated_mp3(tmp_path / "cut.mp3")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        samples = load_audio(cut)
        duration = audio_duration(cut)
        clip = decode_audio_bytes(cut.read_bytes())
    assert capfd.readouterr().err == ""
    assert len(samples) > 16_000 and len(clip) > 16_000 and duration > 0  # decoded, not refused
    assert any("Xing stream size" in r.getMessage() for r in caplog.records if r.name == LOGGER)
