"""The local E2B API's sandbox filesystem and background commands, as the real `e2b` SDK sees them.

Each sandbox's directory stands for its `/`; `/home/user` is the home and the default for relative paths.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2b import (
    CommandExitException,
    FileNotFoundException,
    FileType,
    InvalidArgumentException,
    NotFoundException,
    Sandbox,
    SandboxException,
)

from devstack.e2b_local import LocalE2B
from plugins.services import sandbox_processes


def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def sandbox(e2b_env: LocalE2B) -> Sandbox:
    return Sandbox.create()


@pytest.fixture
def host_secret(tmp_path: Path) -> Iterator[Path]:
    """A file of the host's, outside every sandbox, that no file call may read or change."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only\n")
    yield secret
    assert secret.read_text() == "host only\n", "a file call reached the host's file"


def snapshot(api: LocalE2B, sandbox: Sandbox) -> dict[str, object]:
    return next(s for s in api.sandboxes() if s["sandbox_id"] == sandbox.sandbox_id)


# -- reading and writing -----------------------------------------------------------------------------------


def test_write_then_read_round_trips_text_and_bytes_creating_parents_and_overwriting(
    sandbox: Sandbox,
) -> None:
    info = sandbox.files.write("/home/user/a/b/c.txt", "héllo\n")
    assert (info.path, info.name, info.type) == ("/home/user/a/b/c.txt", "c.txt", FileType.FILE)
    assert sandbox.files.read("/home/user/a/b/c.txt") == "héllo\n"

    binary = bytes(range(256)) * 3 + b"\r\n\r\n--not-a-boundary\r\n"
    sandbox.files.write("/tmp/blob.bin", binary)
    assert sandbox.files.read("/tmp/blob.bin", format="bytes") == binary

    sandbox.files.write("/home/user/a/b/c.txt", "short")
    assert sandbox.files.read("/home/user/a/b/c.txt") == "short"  # truncated, not patched


def test_write_files_sends_several_files_in_one_request(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    written = sandbox.files.write_files(
        [
            {"path": "/home/user/one.txt", "data": "1"},
            {"path": "nested/dir/two.txt", "data": b"2"},
            {"path": "/opt/three.txt", "data": "3"},
        ]
    )

    assert [w.path for w in written] == [
        "/home/user/one.txt",
        "/home/user/nested/dir/two.txt",
        "/opt/three.txt",
    ]
    assert [sandbox.files.read(w.path) for w in written] == ["1", "2", "3"]
    uploads = [entry for entry in e2b_env.request_log if entry[:2] == ("POST", "/files")]
    assert uploads == [("POST", "/files", 200)]  # multipart, no path query: the filenames carry the paths


def test_file_objects_and_gzip_go_up_as_octet_stream(sandbox: Sandbox) -> None:
    payload = os.urandom(300_000)

    sandbox.files.write("~/streamed.bin", io.BytesIO(payload))
    sandbox.files.write("~/zipped.txt", "compress me " * 1000, gzip=True)

    assert sandbox.files.read("~/streamed.bin", format="bytes") == payload
    assert sandbox.files.read("~/zipped.txt") == "compress me " * 1000
    assert b"".join(sandbox.files.read("~/streamed.bin", format="stream")) == payload


@pytest.mark.skipif(not hasattr(os, "setxattr"), reason="metadata lives in extended attributes")
def test_upload_metadata_is_kept_with_the_file(sandbox: Sandbox) -> None:
    written = sandbox.files.write("tagged.txt", "x", metadata={"Owner": "tests"})

    assert written.metadata == {"owner": "tests"}  # keys lowercased, as envd stores them
    assert sandbox.files.get_info("tagged.txt").metadata == {"owner": "tests"}
    sandbox.files.write("tagged.txt", "y")
    assert sandbox.files.get_info("tagged.txt").metadata is None  # an overwrite replaces the metadata


def test_reading_a_missing_file_or_a_directory_fails_like_envd(sandbox: Sandbox) -> None:
    sandbox.files.make_dir("/home/user/folder")

    with pytest.raises(FileNotFoundException, match=r"/home/user/missing\.txt' does not exist"):
        sandbox.files.read("missing.txt")
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sandbox.files.read("/home/user/folder")
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sandbox.files.write("/home/user/folder", "x")


# -- listing and entries -----------------------------------------------------------------------------------


def test_list_reports_names_paths_types_and_sizes_to_the_requested_depth(sandbox: Sandbox) -> None:
    sandbox.files.write("/home/user/project/readme.md", "12345")
    sandbox.files.write("/home/user/project/src/main.py", "print()\n")
    sandbox.files.make_dir("/home/user/project/empty")

    shallow = sandbox.files.list("/home/user/project")
    deep = sandbox.files.list("/home/user/project", depth=2)

    assert [(e.name, e.path, e.type, e.size) for e in shallow] == [
        ("empty", "/home/user/project/empty", FileType.DIR, 4096),
        ("readme.md", "/home/user/project/readme.md", FileType.FILE, 5),
        ("src", "/home/user/project/src", FileType.DIR, 4096),
    ]
    assert [e.path for e in deep] == [
        "/home/user/project/empty",
        "/home/user/project/readme.md",
        "/home/user/project/src",
        "/home/user/project/src/main.py",
    ]
    assert deep[-1].size == 8
    with pytest.raises(InvalidArgumentException, match="not a directory"):
        sandbox.files.list("/home/user/project/readme.md")
    with pytest.raises(FileNotFoundException):
        sandbox.files.list("/home/user/nowhere")


def test_get_info_describes_an_entry_as_envd_does(sandbox: Sandbox) -> None:
    sandbox.files.write("notes.txt", "hello")
    sandbox.commands.run("chmod 640 notes.txt")
    before = datetime.now(UTC)

    info = sandbox.files.get_info("notes.txt")
    home = sandbox.files.get_info("/home/user")

    assert (info.name, info.path, info.type, info.size) == (
        "notes.txt",
        "/home/user/notes.txt",
        FileType.FILE,
        5,
    )
    assert (info.mode, info.permissions) == (0o640, "-rw-r-----")  # permission bits only
    assert (info.owner, info.group) == ("user", "user")
    assert before - timedelta(seconds=5) < info.modified_time <= before + timedelta(seconds=1)
    assert (home.type, home.mode, home.permissions) == (FileType.DIR, 0o755, "drwxr-xr-x")
    assert sandbox.files.get_info("/").path == "/"


def test_exists_make_dir_remove_and_rename_follow_envds_rules(sandbox: Sandbox) -> None:
    assert sandbox.files.exists("/home/user") is True
    assert sandbox.files.exists("/home/user/later") is False
    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info("/home/user/later")

    assert sandbox.files.make_dir("/home/user/later/deeper") is True  # parents too
    assert sandbox.files.make_dir("/home/user/later/deeper") is False  # already_exists
    sandbox.files.write("/home/user/later/file.txt", "f")
    with pytest.raises(InvalidArgumentException, match="not a directory"):
        sandbox.files.make_dir("/home/user/later/file.txt")

    moved = sandbox.files.rename("/home/user/later/file.txt", "/home/user/elsewhere/new/name.txt")
    assert (moved.path, moved.name, moved.type) == (
        "/home/user/elsewhere/new/name.txt",
        "name.txt",
        FileType.FILE,
    )
    assert sandbox.files.read("/home/user/elsewhere/new/name.txt") == "f"
    with pytest.raises(FileNotFoundException, match="source file not found"):
        sandbox.files.rename("/home/user/later/file.txt", "/home/user/x.txt")

    sandbox.files.remove("/home/user/later")  # a directory, with what is in it
    sandbox.files.remove("/home/user/never-was")  # a missing path is no error (os.RemoveAll)
    assert sandbox.files.exists("/home/user/later") is False


def test_relative_paths_and_tilde_are_under_the_home(sandbox: Sandbox) -> None:
    sandbox.files.write("rel/a.txt", "relative")

    assert sandbox.files.read("/home/user/rel/a.txt") == "relative"
    assert sandbox.files.read("~/rel/a.txt") == "relative"
    assert sandbox.files.read("./rel/../rel/a.txt") == "relative"
    assert [e.path for e in sandbox.files.list("~")] == ["/home/user/rel"]
    assert sandbox.files.get_info("~").path == "/home/user"
    with pytest.raises(InvalidArgumentException, match="user-specific home"):
        sandbox.files.read("~root/x")


# -- isolation ---------------------------------------------------------------------------------------------


def test_two_sandboxes_never_see_each_others_files(e2b_env: LocalE2B) -> None:
    first, second = Sandbox.create(), Sandbox.create()

    first.files.write("/home/user/mine.txt", "first's")
    second.files.write("/home/user/mine.txt", "second's")

    assert first.files.read("/home/user/mine.txt") == "first's"
    assert second.files.read("/home/user/mine.txt") == "second's"
    first.files.write("/tmp/only-first", "x")
    assert second.files.exists("/tmp/only-first") is False
    assert first.commands.run("cat ~/mine.txt").stdout == "first's"


def test_dot_dot_stops_at_the_sandbox_root(sandbox: Sandbox, host_secret: Path) -> None:
    climb = "../" * 20 + str(host_secret).lstrip("/")

    with pytest.raises(FileNotFoundException):  # /<host path> inside the sandbox: nothing there
        sandbox.files.read(climb)
    with pytest.raises(FileNotFoundException):
        sandbox.files.read("/" + "../" * 20 + str(host_secret).lstrip("/"))
    assert sandbox.files.exists(climb) is False

    written = sandbox.files.write(climb, "stays inside")
    assert written.path == str(host_secret)  # the sandbox's own file of that name, not the host's
    assert sandbox.files.read(str(host_secret)) == "stays inside"
    sandbox.files.remove(climb)


def test_a_symlink_leading_out_of_the_sandbox_is_never_followed(
    e2b_env: LocalE2B, sandbox: Sandbox, host_secret: Path
) -> None:
    sandbox.commands.run(f"ln -s {host_secret} out.txt && ln -s {host_secret.parent} outdir")

    for call in (
        lambda: sandbox.files.read("out.txt"),
        lambda: sandbox.files.write("out.txt", "overwritten"),
        lambda: sandbox.files.write("outdir/planted.txt", "planted"),
        lambda: sandbox.files.list("outdir"),
        lambda: sandbox.files.make_dir("outdir/sub"),
        lambda: sandbox.files.rename("outdir/host-secret.txt", "/home/user/stolen.txt"),
    ):
        with pytest.raises(InvalidArgumentException, match="outside the sandbox"):
            call()
    assert not (host_secret.parent / "planted.txt").exists()
    assert not (host_secret.parent / "sub").exists()

    link = sandbox.files.get_info("out.txt")  # the link itself, as a dangling one: nothing of the host's
    assert (link.type, link.symlink_target, link.size) == (None, "/home/user/out.txt", len(str(host_secret)))
    sandbox.files.remove("out.txt")  # removes the link, never its target
    assert sandbox.files.exists("out.txt") is False


def test_a_symlink_inside_the_sandbox_is_followed(sandbox: Sandbox) -> None:
    sandbox.files.write("/home/user/real/target.txt", "through the link")
    sandbox.commands.run("ln -s real/target.txt link.txt && ln -s real linkdir")

    assert sandbox.files.read("link.txt") == "through the link"
    info = sandbox.files.get_info("link.txt")
    assert (info.type, info.symlink_target, info.permissions) == (
        FileType.FILE,
        "/home/user/real/target.txt",
        "Lrwxrwxrwx",
    )
    assert [e.path for e in sandbox.files.list("linkdir")] == ["/home/user/linkdir/target.txt"]


# -- lifecycle ---------------------------------------------------------------------------------------------


def test_files_survive_pause_and_resume_and_vanish_with_kill(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    sandbox.files.write("/home/user/keep.txt", "kept")
    root = Path(str(snapshot(e2b_env, sandbox)["workdir"]))

    sandbox.pause()
    assert (root / "home/user/keep.txt").read_text() == "kept"
    with pytest.raises(SandboxException, match="paused"):
        sandbox.files.read("/home/user/keep.txt")
    resumed = Sandbox.connect(sandbox.sandbox_id)
    assert resumed.files.read("/home/user/keep.txt") == "kept"

    resumed.kill()
    assert not root.exists()


# -- files and commands ------------------------------------------------------------------------------------


def test_commands_and_the_file_api_share_one_filesystem(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    sandbox.files.write("/home/user/from-api.txt", "written by files.write")
    sandbox.commands.run("mkdir -p out && echo 'written by a command' > out/from-command.txt")

    assert sandbox.commands.run("cat from-api.txt").stdout == "written by files.write"
    assert sandbox.files.read("/home/user/out/from-command.txt") == "written by a command\n"
    home = str(snapshot(e2b_env, sandbox)["home"])
    assert sandbox.commands.run('echo "$PWD $HOME"').stdout == f"{home} {home}\n"  # host paths
    sandbox.files.make_dir("/work")
    assert sandbox.commands.run("pwd", cwd="/work").stdout.strip().endswith(f"{sandbox.sandbox_id}/work")


# -- background commands -----------------------------------------------------------------------------------


def test_a_background_run_returns_at_once_and_is_listed_as_sent(sandbox: Sandbox) -> None:
    sandbox.files.make_dir("/home/user/jobs")
    started = time.monotonic()

    handle = sandbox.commands.run("sleep 30", background=True, envs={"JOB": "1"}, cwd="/home/user/jobs")

    assert time.monotonic() - started < 1.0
    [info] = sandbox.commands.list()
    assert (info.pid, info.cmd, info.args) == (handle.pid, "/bin/bash", ["-l", "-c", "sleep 30"])
    assert (info.envs, info.cwd, info.tag) == ({"JOB": "1"}, "/home/user/jobs", None)
    assert sandbox.commands.kill(handle.pid) is True
    eventually(lambda: sandbox.commands.list() == [])
    assert sandbox.commands.kill(handle.pid) is False
    assert sandbox.commands.kill(999_999) is False


def test_a_background_command_outlives_its_client_until_its_timeout(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30", background=True, timeout=1)
    handle.disconnect()

    time.sleep(0.3)
    assert [p.pid for p in sandbox.commands.list()] == [handle.pid]  # no client, still running
    eventually(lambda: sandbox.commands.list() == [], within=3)  # Connect-Timeout-Ms passed: killed


def test_kill_ends_the_whole_process_group(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30 & sleep 30 & wait", background=True)

    assert sandbox.commands.kill(handle.pid) is True

    with pytest.raises(CommandExitException) as raised:
        handle.wait()
    assert raised.value.exit_code == -1
    if sys.platform.startswith("linux"):
        eventually(lambda: sandbox_processes(sandbox.sandbox_id) == [], within=2)


def test_connect_streams_the_rest_of_a_running_commands_output(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("echo early; sleep 0.5; echo late; exit 3", background=True)
    time.sleep(0.25)

    attached = sandbox.commands.connect(handle.pid)

    with pytest.raises(CommandExitException) as raised:
        attached.wait()
    assert (raised.value.stdout, raised.value.exit_code) == ("late\n", 3)  # from the moment it connected
    with pytest.raises(CommandExitException) as original:
        handle.wait()
    assert original.value.stdout == "early\nlate\n"  # the first stream saw everything


def test_connect_after_the_command_ended_gets_its_exit_and_an_unknown_pid_is_not_found(
    sandbox: Sandbox,
) -> None:
    handle = sandbox.commands.run("exit 5", background=True)
    with pytest.raises(CommandExitException):
        handle.wait()

    late = sandbox.commands.connect(handle.pid)
    with pytest.raises(CommandExitException) as raised:
        late.wait()
    assert raised.value.exit_code == 5
    with pytest.raises(NotFoundException):
        sandbox.commands.connect(999_999)


def test_stdin_can_be_sent_and_closed(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("tr a-z A-Z", background=True, stdin=True)

    handle.send_stdin("shout\n")
    sandbox.commands.send_stdin(handle.pid, b"louder\n")
    handle.close_stdin()

    assert handle.wait().stdout == "SHOUT\nLOUDER\n"
    without = sandbox.commands.run("sleep 5", background=True)
    with pytest.raises(SandboxException, match="stdin not enabled"):
        without.send_stdin("ignored")
    without.kill()
