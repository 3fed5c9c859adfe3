"""A throw-away PostgreSQL server (for the tests and ``bench.scaleout_postgres``): ``initdb``
into a temp folder, ``pg_ctl start`` on a free port with its unix socket in that folder,
stopped and removed at the end.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser -u postgres --``). The binaries come from PATH or Debian's
/usr/lib/postgresql/<version>/bin (what ``apt-get install postgresql`` leaves, and what
scripts/ensure-postgres.sh installs on a fresh machine).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    socket_dir: Path
    port: int
    user: str
    # how to stop and start it again (outage tests): pg_ctl and its arguments
    pg_ctl: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash."""
        subprocess.run([*self.pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=120)

    def pids(self) -> list[int]:
        """The postmaster and its children (to freeze the server with SIGSTOP)."""
        data = Path(self.pg_ctl[self.pg_ctl.index("-D") + 1])
        main = int((data / "postmaster.pid").read_text().split()[0])
        kids = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        return [main, *map(int, kids)]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "cf_" + uuid.uuid4().hex[:12]
        with psycopg.connect(_libpq(self.url()), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8')
        return self.url(name)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def temporary_server() -> Iterator[Server]:
    """Start a server; raises RuntimeError with the reason when it cannot."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("initdb/pg_ctl not found (apt-get install postgresql, or make test)")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        raise RuntimeError("running as root without runuser: initdb refuses root")
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and no 'postgres' user for initdb") from None
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="crossfind-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    log = tmp / "server.log"
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            [*prefix, *args], check=True, capture_output=True, text=True, timeout=120
        )
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8",
            "--no-instructions")
        # durability off: a test server's data is thrown away anyway
        opts = (f"-p {port} -k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
                " -c full_page_writes=off -c max_connections=200")
        pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts]
        run(*pg_ctl[len(prefix):], "-w", "-t", "60", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or ""
        if log.exists():
            detail += log.read_text(errors="replace")[-2000:]
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {detail.strip()[-800:]}") from None
    server = Server(sock, port, user, pg_ctl)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
