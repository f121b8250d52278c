"""Plain words for a permission problem: who owns a file, its mode, and who is asking.

Used when the state database or the configuration file cannot be read or written, so that the
message names the actual problem ("owned by recorder:recorder, mode 0640; you are alice, not in
group recorder") instead of a generic SQLite error that sounds like corruption.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def who_am_i() -> str:
    groups = sorted({os.getegid(), *os.getgroups()})
    return f"you are {_user(os.geteuid())} (groups: {', '.join(_group(gid) for gid in groups)})"


def blocking_directory(path: Path) -> Path | None:
    """The first directory above `path` that this process may not enter, if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not os.access(parent, os.X_OK):
            return parent
    return None


def describe_access(path: Path) -> str:
    """`path`'s owner, group and mode (or the directory that hides it), and who we are."""
    hidden_by = blocking_directory(path)
    target = hidden_by if hidden_by is not None else path
    try:
        info = target.stat()
    except OSError:
        return who_am_i()
    mode = f"{stat.S_IMODE(info.st_mode):04o}"
    what = f"directory {target}" if hidden_by is not None or stat.S_ISDIR(info.st_mode) else str(target)
    return f"{what} is owned by {_user(info.st_uid)}:{_group(info.st_gid)} with mode {mode}; {who_am_i()}"


def join_group_hint(path: Path) -> str:
    """What to do about it: join the group that owns `path` (or the directory hiding it)."""
    hidden_by = blocking_directory(path)
    try:
        gid = (hidden_by or path).stat().st_gid
    except OSError:
        return "Ask its owner for access"
    if gid == 0:
        return "Run it with sudo, or ask its owner for access"
    group = _group(gid)
    return f"Join its group (`sudo adduser $USER {group}`, then log in again) or use sudo"
