"""A local sandbox's filesystem: a host directory that stands for the sandbox's `/`, under envd's path rules.

Paths are resolved the way envd resolves them (`infra:packages/envd/internal/permissions/path.go`): `~` and
`~/x` are the user's home, `/home/user`; a relative path is relative to that home (not to any cwd); `..` is
resolved lexically (Go's `filepath.Clean`), so at `/` it stays at `/` and no path can climb out of the root.
The sandbox path `/x` is then the host path `<root>/x`.

Symbolic links are the one way out: a command (a host process) can create one that points anywhere on the
host. Every file call therefore resolves links on the host and refuses (`invalid_argument`, 400 on `/files`)
a path whose resolution leaves the root; it never follows such a link. Calls about an entry itself (stat,
remove, rename) resolve only its parent, so a link that points out can still be seen, removed or renamed.
This keeps the file API off the host's files; it is not a security boundary against a hostile sandbox
(commands are host processes anyway, and a link swapped in between the check and the use is not caught).

Entries are described as envd describes them (`infra:packages/shared/pkg/filesystem/entry.go`, envd 0.6.13):
`mode` holds the permission bits only, `permissions` is Go's `FileMode.String()`, a symlink is reported with
its target's type and mode, and user metadata lives in `user.e2b.*` extended attributes.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import posixpath
import pwd
import shutil
import stat
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.e2b_local.errors import RpcError

HOME = "/home/user"  # the default user's home in real templates
USER = "user"  # the default user: who owns what the server's own uid owns, as seen from the sandbox
XATTR_PREFIX = "user.e2b."  # envd keeps file metadata in these extended attributes
_HAVE_XATTR = hasattr(os, "setxattr")
_XATTR_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}
COPY_CHUNK = 64 * 1024


class SandboxFS:
    """One sandbox's files. Every public method takes sandbox paths and reports sandbox paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    @classmethod
    def create(cls, root: Path) -> SandboxFS:
        """A new root with the directories every template has: the user's home, root's home and /tmp."""
        (root / HOME.lstrip("/")).mkdir(parents=True)
        (root / "root").mkdir(mode=0o700)
        (root / "tmp").mkdir()
        (root / "tmp").chmod(0o1777)
        return cls(root)

    @property
    def home(self) -> Path:
        return self.root / HOME.lstrip("/")

    # -- paths ---------------------------------------------------------------------------------------------

    def expand(self, path: str, home: str = HOME) -> str:
        """The absolute, clean sandbox path a request means (envd's ExpandAndResolve, then Clean), for the
        user whose home is `home`."""
        if path.startswith("~"):
            if len(path) > 1 and path[1] != "/":
                raise RpcError(
                    "invalid_argument",
                    f"failed to expand path '{path}': cannot expand user-specific home dir",
                )
            path = home + path[1:]
        if not path.startswith("/"):
            path = f"{home}/{path}"
        return _clean(path)

    def follow(self, sandbox_path: str) -> Path:
        """The host path with every symlink resolved; refused if that leaves the root."""
        real = os.path.realpath(self._lexical(sandbox_path))
        if not self._inside(real):
            raise RpcError(
                "invalid_argument",
                f"path '{sandbox_path}' resolves outside the sandbox (a symlink leads out)",
            )
        return Path(real)

    def entry(self, sandbox_path: str) -> Path:
        """The host path of the entry itself: its parent resolved (and checked), its last part as it is."""
        if sandbox_path == "/":
            return self.root
        parent, name = posixpath.split(sandbox_path)
        return self.follow(parent) / name

    def visible(self, host_path: str | Path) -> str | None:
        """The sandbox path of a host path inside the root, else None."""
        real = str(host_path)
        if real == str(self.root):
            return "/"
        if self._inside(real):
            return "/" + os.path.relpath(real, self.root)
        return None

    def _lexical(self, sandbox_path: str) -> str:
        return os.path.join(self.root, sandbox_path.lstrip("/"))

    def _inside(self, real: str) -> bool:
        root = str(self.root)
        return real == root or real.startswith(root + os.sep)

    # -- filesystem RPCs -----------------------------------------------------------------------------------

    def stat(self, path: str, home: str = HOME) -> dict[str, Any]:
        """Stat: the entry itself (a symlink is not followed, but described by its target)."""
        sandbox_path = self.expand(path, home)
        return self.entry_info(self.entry(sandbox_path), sandbox_path)

    def list_dir(self, path: str, depth: int, home: str = HOME) -> list[dict[str, Any]]:
        """ListDir: entries up to `depth` levels down, in lexical order, paths under the requested path.
        Symlinked directories are listed but not descended into (filepath.WalkDir)."""
        requested = self.expand(path, home)
        directory = self.follow(requested)
        try:
            info = os.stat(directory)
        except FileNotFoundError as error:
            raise RpcError("not_found", f"path not found: {requested}") from error
        except OSError as error:
            raise _internal("error getting file info", requested, error) from error
        if not stat.S_ISDIR(info.st_mode):
            raise RpcError("invalid_argument", f"path is not a directory: {requested}")
        entries: list[dict[str, Any]] = []
        self._walk(directory, requested, max(depth, 1), entries)
        return entries

    def _walk(self, directory: Path, sandbox_dir: str, depth: int, out: list[dict[str, Any]]) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as error:
            raise _internal("error reading directory", sandbox_dir, error) from error
        for name in names:
            host_path = directory / name
            sandbox_path = posixpath.join(sandbox_dir, name)
            try:
                info = self.entry_info(host_path, sandbox_path)
            except RpcError as error:
                if error.code == "not_found":
                    continue  # gone meanwhile
                raise
            out.append(info)
            if depth > 1 and host_path.is_dir() and not host_path.is_symlink():
                self._walk(host_path, sandbox_path, depth - 1, out)

    def make_dir(self, path: str, home: str = HOME) -> dict[str, Any]:
        """MakeDir: creates parents too; an existing directory is `already_exists`."""
        sandbox_path = self.expand(path, home)
        target = self.follow(sandbox_path)
        try:
            info = os.stat(target)
        except FileNotFoundError:
            info = None
        except OSError as error:
            raise _internal("error getting file info", sandbox_path, error) from error
        if info is not None:
            if stat.S_ISDIR(info.st_mode):
                raise RpcError("already_exists", f"directory already exists: {sandbox_path}")
            raise RpcError(
                "invalid_argument", f"path already exists but it is not a directory: {sandbox_path}"
            )
        self._ensure_dirs(target, sandbox_path)
        return self.entry_info(self.entry(sandbox_path), sandbox_path)

    def remove(self, path: str, home: str = HOME) -> None:
        """Remove: os.RemoveAll, so a missing path is success; a symlink is removed, never its target."""
        sandbox_path = self.expand(path, home)
        if sandbox_path == "/":
            raise RpcError("invalid_argument", "refusing to remove the sandbox's root directory")
        target = self.entry(sandbox_path)
        try:
            if target.is_dir() and not target.is_symlink():
                remove_tree(target)
            else:
                target.unlink(missing_ok=True)
        except NotADirectoryError:
            return  # a parent is a file: nothing there (RemoveAll answers nil too)
        except OSError as error:
            raise _internal("error removing file or directory", sandbox_path, error) from error

    def move(self, source: str, destination: str, home: str = HOME) -> dict[str, Any]:
        """Move: creates the destination's parents; a missing source is `not_found`."""
        source_path, destination_path = self.expand(source, home), self.expand(destination, home)
        if "/" in (source_path, destination_path):
            raise RpcError("invalid_argument", "the sandbox's root directory cannot be moved or replaced")
        source_host = self.entry(source_path)
        parent, name = posixpath.split(destination_path)
        parent_host = self.follow(parent)
        self._ensure_dirs(parent_host, parent)
        try:
            os.rename(source_host, parent_host / name)
        except FileNotFoundError as error:
            raise RpcError("not_found", f"source file not found: {source_path}") from error
        except OSError as error:
            raise _internal("error renaming", source_path, error) from error
        return self.entry_info(parent_host / name, destination_path)

    # -- /files --------------------------------------------------------------------------------------------

    def readable(self, path: str, home: str = HOME) -> tuple[Path, str, os.stat_result]:
        """GET /files: the host file to send, its sandbox path and its stat. Errors are HTTP statuses."""
        sandbox_path = self.expand(path, home)
        target = self.follow(sandbox_path)
        try:
            info = os.stat(target)
        except FileNotFoundError as error:
            raise RpcError("not_found", f"path '{sandbox_path}' does not exist") from error
        except NotADirectoryError as error:
            raise RpcError("not_found", f"path '{sandbox_path}' does not exist") from error
        except OSError as error:
            raise _internal("error checking if path exists", sandbox_path, error) from error
        if stat.S_ISDIR(info.st_mode):
            raise RpcError("invalid_argument", f"path '{sandbox_path}' is a directory")
        return target, sandbox_path, info

    def write(
        self, path: str, chunks: Iterable[bytes], metadata: dict[str, str] | None, home: str = HOME
    ) -> dict[str, Any]:
        """POST /files, one file: parents created, an existing file truncated; a directory is refused.
        Metadata replaces the file's `user.e2b.*` attributes (none given: they are cleared, as envd does)."""
        sandbox_path = self.expand(path, home)
        target = self.follow(sandbox_path)
        if sandbox_path == "/" or target.is_dir():
            raise RpcError("invalid_argument", f"path is a directory: {sandbox_path}")
        self._ensure_dirs(target.parent, posixpath.dirname(sandbox_path))
        try:
            with open(target, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
                _write_metadata(file.fileno(), metadata or {})
        except IsADirectoryError as error:
            raise RpcError("invalid_argument", f"path is a directory: {sandbox_path}") from error
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RpcError("resource_exhausted", f"not enough disk space: {error.strerror}") from error
            raise _internal("error writing file", sandbox_path, error) from error
        written: dict[str, Any] = {
            "path": sandbox_path,
            "name": posixpath.basename(sandbox_path),
            "type": "file",
        }
        if persisted := _read_metadata(target):
            written["metadata"] = persisted
        return written

    # -- entries -------------------------------------------------------------------------------------------

    def entry_info(self, host_path: Path, sandbox_path: str) -> dict[str, Any]:
        """envd's EntryInfo as protobuf JSON. A symlink gets its target's type and mode when the target is
        inside the sandbox; one that dangles or leads out gets neither (FILE_TYPE_UNSPECIFIED), like a
        dangling link in envd, and its own path as `symlinkTarget`."""
        try:
            info = os.lstat(host_path)
        except (FileNotFoundError, NotADirectoryError) as error:
            raise RpcError("not_found", f"file not found: {sandbox_path}") from error
        except OSError as error:
            raise _internal("error getting file info", sandbox_path, error) from error
        entry: dict[str, Any] = {"name": posixpath.basename(sandbox_path) or "/"}
        described: os.stat_result | None = info
        metadata_source: Path | None = host_path
        symlink_target: str | None = None
        if stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(host_path)
            symlink_target = self.visible(real)
            target_info = None
            if symlink_target is not None:
                with contextlib.suppress(OSError):
                    target_info = os.stat(real)
            if target_info is None:
                symlink_target, metadata_source = sandbox_path, None
            described = target_info
        file_type = _file_type(described.st_mode) if described is not None else None
        if file_type:
            entry["type"] = file_type
        entry["path"] = sandbox_path
        entry["size"] = str(info.st_size)
        entry["mode"] = stat.S_IMODE(described.st_mode) & 0o777 if described is not None else 0
        entry["permissions"] = go_file_mode(info.st_mode)
        entry["owner"] = _owner(info.st_uid)
        entry["group"] = _group(info.st_gid)
        entry["modifiedTime"] = rfc3339_nanos(info.st_mtime_ns)
        if symlink_target is not None:
            entry["symlinkTarget"] = symlink_target
        if metadata_source is not None and (metadata := _read_metadata(metadata_source)):
            entry["metadata"] = metadata
        return entry

    def _ensure_dirs(self, host_dir: Path, sandbox_dir: str) -> None:
        """envd's EnsureDirs: create each missing directory (0o755); a file in the way is an error."""
        try:
            host_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except FileExistsError as error:
            raise RpcError(
                "internal", f"error ensuring directories: path is a file: {sandbox_dir}"
            ) from error
        except NotADirectoryError as error:
            raise RpcError(
                "internal", f"error ensuring directories: path is a file: {sandbox_dir}"
            ) from error
        except OSError as error:
            raise _internal("error ensuring directories", sandbox_dir, error) from error


def remove_tree(path: Path) -> None:
    """rmtree that also gets through directories a command made unreadable or unwritable (chmod 000)."""

    def make_writable(function: Any, failed: str, exc_info: Any) -> None:
        parent = os.path.dirname(failed)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
        with contextlib.suppress(FileNotFoundError):
            function(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)


def _clean(path: str) -> str:
    """Go's filepath.Clean for an absolute path: `..` at the root stays at the root."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _internal(what: str, sandbox_path: str, error: OSError) -> RpcError:
    """An OS error as envd reports it, with the sandbox path (never the host path) in the message."""
    if error.errno == errno.ELOOP:
        return RpcError("failed_precondition", f"cyclic symlink or chain >255 links at '{sandbox_path}'")
    return RpcError("internal", f"{what} '{sandbox_path}': {error.strerror or error}")


def _file_type(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return "FILE_TYPE_FILE"
    if stat.S_ISDIR(mode):
        return "FILE_TYPE_DIRECTORY"
    if stat.S_ISLNK(mode):
        return "FILE_TYPE_SYMLINK"
    return None  # FILE_TYPE_UNSPECIFIED: protobuf JSON leaves a zero enum out


def go_file_mode(mode: int) -> str:
    """Go's os.FileMode.String(): type letters ("dalTLDpSugct?" order) or "-", then rwxrwxrwx."""
    letters = ""
    if stat.S_ISDIR(mode):
        letters += "d"
    if stat.S_ISLNK(mode):
        letters += "L"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        letters += "D"
    if stat.S_ISFIFO(mode):
        letters += "p"
    if stat.S_ISSOCK(mode):
        letters += "S"
    if mode & stat.S_ISUID:
        letters += "u"
    if mode & stat.S_ISGID:
        letters += "g"
    if stat.S_ISCHR(mode):
        letters += "c"
    if mode & stat.S_ISVTX:
        letters += "t"
    permissions = "".join(
        char if mode & (1 << (8 - index)) else "-" for index, char in enumerate("rwxrwxrwx")
    )
    return (letters or "-") + permissions


def rfc3339_nanos(nanoseconds: int) -> str:
    """A protobuf Timestamp in JSON: UTC, with 0, 3, 6 or 9 fractional digits."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        fraction = f"{nanos:09d}"
        for digits in (3, 6):
            if fraction[digits:] == "0" * (9 - digits):
                fraction = fraction[:digits]
                break
        text += "." + fraction
    return text + "Z"


def _owner(uid: int) -> str:
    if uid == os.getuid():
        return USER
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    if gid == os.getgid():
        return USER
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _read_metadata(path: Path) -> dict[str, str]:
    if not _HAVE_XATTR:
        return {}
    try:
        names = os.listxattr(path)
    except OSError:
        return {}
    metadata = {}
    for name in names:
        if name.startswith(XATTR_PREFIX):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                metadata[name[len(XATTR_PREFIX) :]] = os.getxattr(path, name).decode()
    return metadata


def _write_metadata(fd: int, metadata: dict[str, str]) -> None:
    """Replace the file's `user.e2b.*` attributes; a filesystem without xattrs keeps none (envd logs it)."""
    if not _HAVE_XATTR:
        return
    try:
        for name in os.listxattr(fd):
            if name.startswith(XATTR_PREFIX) and name[len(XATTR_PREFIX) :] not in metadata:
                os.removexattr(fd, name)
        for key, value in metadata.items():
            os.setxattr(fd, XATTR_PREFIX + key, value.encode())
    except OSError as error:
        if error.errno not in _XATTR_UNSUPPORTED:
            raise


def validate_metadata(metadata: dict[str, str]) -> None:
    """envd's ValidateMetadata: printable ASCII keys and values, a key fits an xattr name, 4 KiB in all."""
    total = 0
    for key, value in metadata.items():
        if not key:
            raise RpcError("invalid_argument", "invalid metadata: metadata key must not be empty")
        if len(key) > 255 - len(XATTR_PREFIX):
            raise RpcError("invalid_argument", f"invalid metadata: metadata key {key!r} is too long")
        for label, text in (("key", key), (f"value for key {key!r}", value)):
            if any(not 0x20 <= ord(char) <= 0x7E for char in text):
                raise RpcError(
                    "invalid_argument", f"invalid metadata: metadata {label} is not printable ASCII"
                )
        total += len(XATTR_PREFIX) + len(key) + len(value)
    if total > 4096:
        raise RpcError(
            "invalid_argument", f"invalid metadata: total metadata size {total} exceeds 4096 bytes"
        )
