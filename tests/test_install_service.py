"""The service installer (scripts/install-service), run into a throwaway root, and the installed
recorder used as the issue describes: the service writes, a member of group `recorder` reads.

The root is a directory with the few files of /etc that useradd needs; the installer fills it
exactly as it would fill / (numeric owners from that root's passwd and group files). The
unprivileged users are numeric uids with no passwd entry (setpriv), so nothing on this machine
changes. Everything runs the installed copy: /usr/bin/python3 in a virtual environment under the
root, as on a Raspberry Pi.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

INSTALLER = ROOT / "scripts" / "install-service"
READER_UID = 64_231  # a person in group recorder
STRANGER_UID = 64_232  # a person who is not
ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "group": "root:x:0:\ndialout:x:20:\n",
    "shadow": "root:*:19000:0:99999:7:::\n",
    "gshadow": "root:*::\ndialout:*::\n",
}


@dataclass(frozen=True)
class Installed:
    root: Path
    uid: int  # the recorder user's, in the root's passwd
    gid: int
    output: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def recorder(self) -> Path:
        return self.path("/usr/local/bin/recorder")


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every path under root: (kind and mode, uid, gid, symlink target), venv contents aside."""
    tree = {}
    for path in [root, *root.rglob("*")]:
        relative = "/" + str(path.relative_to(root)) if path != root else "/"
        if relative.startswith("/opt/recorder/venv/") or relative.endswith("-"):
            continue  # the venv's own files; useradd's backups (passwd-, group-, ...)
        info = path.lstat()
        target = os.readlink(path) if path.is_symlink() else ""
        tree[relative] = (stat.filemode(info.st_mode), info.st_uid, info.st_gid, target)
    return tree


def fresh_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="recorder-root-"))
    root.chmod(0o755)  # the unprivileged users must reach the installed files
    (root / "etc").mkdir()
    for name, text in ETC.items():
        (root / "etc" / name).write_text(text)
    (root / "etc" / "shadow").chmod(0o640)
    (root / "etc" / "gshadow").chmod(0o640)
    return root


def account(root: Path, table: str, name: str) -> list[str]:
    for line in (root / "etc" / table).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return []


def install(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALLER), "--root", str(root), *arguments], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    assert Path("/usr/bin/python3").exists(), "Debian's python3 is needed (scripts/test installs it)"
    root = fresh_root()
    try:
        completed = install(root)
        assert completed.returncode == 0, completed.stderr[-3000:]
        uid, gid = int(account(root, "passwd", "recorder")[2]), int(account(root, "group", "recorder")[2])
        yield Installed(root, uid, gid, completed.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_the_installer_builds_the_documented_tree(installed: Installed) -> None:
    root, uid, gid = installed.root, installed.uid, installed.gid
    user = account(root, "passwd", "recorder")
    assert uid < 1000 and user[5] == "/var/lib/recorder" and user[6] == "/usr/sbin/nologin"
    assert "recorder" in account(root, "group", "dialout")[3].split(",")
    tree = snapshot(root)
    expected = {
        "/opt/recorder": ("drwxr-xr-x", 0, 0, ""),
        "/opt/recorder/README.md": ("-rw-r--r--", 0, 0, ""),
        "/opt/recorder/venv": ("drwxr-xr-x", 0, 0, ""),
        "/usr/local/bin/recorder": ("lrwxrwxrwx", 0, 0, f"{root}/opt/recorder/venv/bin/recorder"),
        "/var/lib/recorder": ("drwxr-x---", uid, gid, ""),
        "/etc/recorder": ("drwxr-xr-x", 0, 0, ""),
        "/etc/recorder/recorder.toml": ("-rw-r-----", 0, gid, ""),
        "/etc/systemd/system/recorder.service": ("-rw-r--r--", 0, 0, ""),
        "/etc/systemd/system/multi-user.target.wants/recorder.service": (
            "lrwxrwxrwx",
            0,
            0,
            "/etc/systemd/system/recorder.service",
        ),
    }
    for path, entry in expected.items():
        assert tree[path] == entry, path
    added = {path for path in tree if path not in {"/", "/etc", *(f"/etc/{name}" for name in ETC)}}
    parents = {"/opt", "/usr", "/usr/local", "/usr/local/bin", "/var", "/var/lib", "/etc/systemd"}
    parents |= {"/etc/systemd/system", "/etc/systemd/system/multi-user.target.wants"}
    assert added == set(expected) | parents
    assert (
        installed.path("/etc/recorder/recorder.toml").read_text()
        == (ROOT / "deploy/recorder.toml").read_text()
    )
    assert (
        installed.path("/etc/systemd/system/recorder.service").read_text()
        == (ROOT / "deploy/recorder.service").read_text()
    )
    version = subprocess.run(
        [str(installed.recorder), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("recorder ")
    venv_python = installed.path("/opt/recorder/venv/bin/python3")
    assert os.path.realpath(venv_python).startswith("/usr/bin/python3")  # runnable by the service user
    assert "sudo nano /etc/recorder/recorder.toml" in installed.output


def as_user(uid: int, groups: list[int], command: list[str], home: Path) -> list[str]:
    """`command` as a numeric uid with only these supplementary groups (no capabilities)."""
    group_list = ",".join(str(g) for g in groups) if groups else None
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--inh-caps=-all"]
    prefix += [f"--groups={group_list}"] if group_list else ["--clear-groups"]
    return [*prefix, "env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", *command]


@pytest.mark.slow
def test_a_member_of_group_recorder_reads_while_the_service_writes(installed: Installed) -> None:
    """status and nodes list as a person who may only read (file 0640, directory 0750), while
    `recorder run` writes as the service user with the unit's umask; then after it stopped."""
    config = installed.path("/etc/recorder/recorder.toml")
    db = installed.path("/var/lib/recorder/recorder.db")
    original = config.read_text()
    config.write_text(
        'source = "sim:?nodes=20&duration=3h&speed=400x&start=2025-06-21T10:00:00%2B00:00&seed=71"\n'
        f'db = "{db}"\narchive_days = 0\ncommit_interval = 2\n[influx]\nurl = "http://127.0.0.1:9"\n'
    )
    home = Path(tempfile.mkdtemp(prefix="recorder-home-"))
    home.chmod(0o777)
    service = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={installed.uid}",
            f"--regid={installed.gid}",
            "--groups=20",
            "--inh-caps=-all",
            "sh",
            "-c",
            f"umask 0027 && exec {installed.recorder} run --config {config}",  # the unit's UMask
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )

    def read(uid: int, groups: list[int], *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(installed.recorder), *arguments, "--config", str(config)]
        return subprocess.run(as_user(uid, groups, command, home), capture_output=True, text=True, timeout=60)

    def committed_rows() -> int:
        count = f"import sqlite3; print(sqlite3.connect('file:{db}?mode=ro', uri=True).execute('SELECT count(*) FROM outbox').fetchone()[0])"
        python = installed.recorder.resolve().parent / "python3"
        done = subprocess.run(
            as_user(READER_UID, [installed.gid], [str(python), "-c", count], home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (db.exists() and Path(f"{db}-shm").exists()):
            time.sleep(0.2)
        time.sleep(3)  # some commits in
        assert service.poll() is None, service.stderr.read() if service.stderr else ""
        assert stat.S_IMODE(db.stat().st_mode) == 0o640 and db.stat().st_uid == installed.uid
        listing_before = sorted(path.name for path in db.parent.iterdir())
        counts = []
        for _ in range(3):
            status = read(READER_UID, [installed.gid], "status")
            assert status.returncode == 0, status.stderr
            assert f"state database   {db} (`db` in {config})" in status.stdout
            listed = read(READER_UID, [installed.gid], "nodes", "list")
            assert listed.returncode == 0, listed.stderr
            assert "20 nodes, 20 with a barcode" in listed.stdout
            exported = read(READER_UID, [installed.gid], "nodes", "export")
            assert exported.returncode == 0 and '"recorder-nodes"' in exported.stdout
            assert "(newest)" in read(READER_UID, [installed.gid], "db", "current").stdout
            counts.append(committed_rows())
            time.sleep(1.5)
        # The reader sees the writer's new commits, not a stale copy. (`status` shows the health
        # snapshot, saved every 2 minutes to spare the card, so the live count is read directly.)
        assert counts[-1] > counts[0], counts
        # Changing needs write access: a plain message about permissions, not about corruption.
        barcode = json.loads(read(READER_UID, [installed.gid], "nodes", "list", "--json").stdout)[0][
            "barcode"
        ]
        label = read(READER_UID, [installed.gid], "nodes", "label", barcode, "--name", "x")
        assert label.returncode == 2 and "cannot write state database" in label.stderr, label.stderr
        assert "restore a backup" not in label.stderr and len(label.stderr.strip().splitlines()) == 1
        assert service.poll() is None
        assert sorted(path.name for path in db.parent.iterdir()) == listing_before

        stranger = read(STRANGER_UID, [], "status")
        assert stranger.returncode == 2
        (line,) = stranger.stderr.strip().splitlines()
        assert "permission denied" in line and "sudo adduser $USER" in line
        assert "restore a backup" not in line
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        finally:
            service.kill()
            shutil.rmtree(home, ignore_errors=True)
    assert service.returncode == 0, service.stderr.read() if service.stderr else ""
    # Stopped cleanly: no -wal or -shm left, and the directory is still not writable for the reader.
    assert sorted(path.name for path in db.parent.iterdir()) == ["recorder.db"]
    after = read(READER_UID, [installed.gid], "nodes", "list")
    assert after.returncode == 0 and "20 nodes, 20 with a barcode" in after.stdout, after.stderr
    assert sorted(path.name for path in db.parent.iterdir()) == ["recorder.db"]
    with sqlite3.connect(db) as connection:
        waiting = connection.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert waiting > 0  # InfluxDB was unreachable: the readings wait in the outbox
    config.write_text(original)


@pytest.mark.slow
def test_installing_again_keeps_the_configuration_and_uninstall_removes_what_it_added(
    installed: Installed,
) -> None:
    root = installed.root
    config = installed.path("/etc/recorder/recorder.toml")
    config.write_text('source = "/dev/ttyUSB0"\n')
    config.chmod(0o644)  # made world-readable by hand: the installer puts it right
    (installed.path("/var/lib/recorder") / "recorder.db").write_bytes(b"data")
    again = install(root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "keeping the existing" in again.stderr
    assert config.read_text() == 'source = "/dev/ttyUSB0"\n'
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert (
        len([line for line in (root / "etc" / "passwd").read_text().splitlines() if "recorder" in line]) == 1
    )

    removed = install(root, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    tree = snapshot(root)
    for gone in ("/opt/recorder", "/usr/local/bin/recorder", "/etc/systemd/system/recorder.service"):
        assert gone not in tree
    assert "/etc/systemd/system/multi-user.target.wants/recorder.service" not in tree
    assert (installed.path("/var/lib/recorder") / "recorder.db").read_bytes() == b"data"  # data kept
    assert config.exists() and account(root, "passwd", "recorder")

    purged = install(root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not account(root, "passwd", "recorder") and not account(root, "group", "recorder")
    assert "recorder" not in account(root, "group", "dialout")[3].split(",")
    left = {path for path in snapshot(root) if path.startswith(("/opt/", "/var/lib/", "/etc/recorder"))}
    assert left == set()
    for name, text in ETC.items():
        assert (root / "etc" / name).read_text() == text, name


def test_the_installer_refuses_politely() -> None:
    completed = subprocess.run([str(INSTALLER), "--frobnicate"], capture_output=True, text=True)
    assert completed.returncode == 2 and "unknown option --frobnicate" in completed.stderr
    root = fresh_root()
    try:
        (root / "etc" / "group").write_text("root:x:0:\n")  # no dialout: not a Debian system
        completed = install(root)
        assert completed.returncode == 2 and "no dialout group" in completed.stderr
        assert sorted(path.name for path in root.iterdir()) == ["etc"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
