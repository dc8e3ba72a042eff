"""What happens to a followed input under the server: a file replaced before the first look,
something else at the path, a path that cannot be looked up, standard input's flags."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sseplay.config import StreamOptions, Timing
from sseplay.server import Server
from sseplay.sources.follow_input import prepare_file, prepare_stdin
from sseplay.stream import Stream
from tests.conftest import ServeProcess, write_lines
from tests.sources.test_follow import WAIT, Reader


@pytest.mark.parametrize("how", ["replaced", "rewritten"])
def test_a_file_changed_between_the_check_and_the_first_look_is_read_from_its_start(
    tmp_path: Path, how: str
) -> None:
    # The follower opened the path at its first look and read on from the offset the
    # start-up check found in the old file: the new file's first records were lost and a
    # torn line logged as invalid (log rotation during a long start-up check, or a Server
    # started again later from the same Stream).
    path = write_lines(tmp_path / "log.jsonl", [{"old": n} for n in range(1, 4)])
    options = StreamOptions(timing=Timing(interval=0), follow=True)
    event_file, source = prepare_file(path.name, path, options.mapping)
    new = [{"new": n, "pad": "x" * 20} for n in range(1, 6)]
    if how == "replaced":
        os.replace(write_lines(tmp_path / "log.jsonl.new", new), path)
    else:
        write_lines(path, new)  # truncated and written again, longer than before
    with Server(Stream(event_file, options, follow=source)) as server:
        client = Reader(server.url, last_event_id="3")
        try:
            assert client.wait_for(5) == [4, 5, 6, 7, 8]
            assert [record["new"] for record in client.data()] == [1, 2, 3, 4, 5]
        finally:
            client.close()


@pytest.mark.parametrize("how", ["the input closes", "the server stops"])
def test_followed_standard_input_is_left_blocking_as_it_was_found(how: str) -> None:
    # O_NONBLOCK is a flag of the open file, shared with the shell's terminal or the
    # program that embeds the Server: it stayed set, and their next read failed (EAGAIN).
    read_end, write_end = os.pipe()
    try:
        options = StreamOptions(follow=True)
        stream = Stream(None, options, follow=prepare_stdin(options.mapping, fd=read_end))
        with Server(stream) as server:
            client = Reader(server.url)
            try:
                os.write(write_end, b'{"n": 1}\n')
                assert client.wait_for(1) == [1]
                if how == "the input closes":
                    os.close(write_end)
                    write_end = -1
                    assert client.ended.wait(WAIT)
            finally:
                client.close()
        assert os.get_blocking(read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


@pytest.mark.parametrize("stand_in", ["directory", "fifo"])
def test_something_other_than_a_file_at_the_path_is_waited_out(
    tmp_path: Path, stand_in: str
) -> None:
    # A directory at the followed path ended every stream for good (IsADirectoryError:
    # clients then got 204 and stopped reconnecting); a FIFO there blocked the follower's
    # worker thread in open() forever, and SIGTERM no longer stopped the server.
    path = write_lines(tmp_path / "log.jsonl", [{"n": 1}])
    with ServeProcess(str(path), "--follow", "--interval", "0") as server:
        client = Reader(server.url)
        try:
            assert client.wait_for(1) == [1]
            path.rename(tmp_path / "log.jsonl.1")
            if stand_in == "directory":
                path.mkdir()
            else:
                os.mkfifo(path)
            time.sleep(0.2)  # several looks at the path
            assert not client.ended.is_set()
            if stand_in == "directory":
                path.rmdir()
            else:
                path.unlink()
            write_lines(path, [{"n": 2}])
            assert client.wait_for(2) == [1, 2]
            assert not client.ended.is_set()
            stopping = time.monotonic()
            code, _, err = server.stop()
        finally:
            client.close()
    assert time.monotonic() - stopping < 1.5
    assert code == 0
    assert "is not a regular file: waiting for a file to read" in err


def test_a_path_that_cannot_be_looked_up_for_a_while_is_waited_out(tmp_path: Path) -> None:
    # Only "no such file" was waited out: any other error looking up the path (here its
    # directory replaced by a file: ENOTDIR; or a directory no longer searchable: EACCES)
    # ended every stream of the route for good, and clients were then told 204.
    folder = tmp_path / "logs"
    folder.mkdir()
    path = write_lines(folder / "log.jsonl", [{"n": 1}])
    with ServeProcess(str(path), "--follow", "--interval", "0") as server:
        client = Reader(server.url)
        try:
            assert client.wait_for(1) == [1]
            folder.rename(tmp_path / "logs.1")
            folder.write_text("not a directory")
            time.sleep(0.2)  # several looks at the path
            assert not client.ended.is_set()
            folder.unlink()
            folder.mkdir()
            write_lines(path, [{"n": 2}])
            assert client.wait_for(2) == [1, 2]
            code, _, err = server.stop()
        finally:
            client.close()
    assert code == 0
    # A look may land between the rename and the new file: then the path is first "gone",
    # and the waiting is said once, in those words instead.
    assert (
        "cannot be looked up (Not a directory): waiting for a file to read" in err
        or "is gone: waiting for it to come back" in err
    )
