"""One writer per workdir: WORKDIR/lock.json names the run that holds it.

Two runs on one workdir would interleave metrics.jsonl and overwrite each other's
checkpoints, so a run takes the lock before it writes anything and a second run stops with
one line naming the holder (host, pid, start time). The holder rewrites the lock's heartbeat
every `BEAT` seconds. A lock is taken over, with a warning, only from a run that is provably
gone: on this host its process no longer exists (a live one keeps its lock however old its
heartbeat: a suspended laptop, a paused VM); on another host its heartbeat is older than
`STALE` seconds (a preempted VM).

The holder checks that the lock still names it before each write (`Lock.check`: checkpoint
saves, metrics) and its heartbeat never writes over another run's lock, so a run whose lock
was taken (its heartbeat stalled on a bucket for `STALE` seconds) stops with one line
instead of writing beside the run that took it.

Locally the lock is created with O_EXCL, so of two runs started together exactly one gets
it. Object stores have no exclusive create: there the lock is written, then read back to
check the run still holds it. That stops a run started while another one runs; two runs
started within the same second may both pass (docs/design.md says so).
"""

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

import jax

from ssljax import paths, pretrained
from ssljax.errors import UserError

log = logging.getLogger(__name__)

NAME = pretrained.LOCK_FILE  # a workdir's files are named where `holds_run` reads them
BEAT = 60.0  # seconds between heartbeats
STALE = 600.0  # a heartbeat older than this belongs to a run that is gone


def _process_start(pid: int) -> str | None:
  """When process `pid` started (clock ticks since boot, Linux's /proc), or None where that
  cannot be read: with the pid it names one process, not a later one given the same pid."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(holder: dict) -> bool:
  """False only when the holder is provably gone."""
  if holder.get('host') != socket.gethostname():  # its process cannot be checked from here
    return time.time() - holder.get('beat', 0) <= STALE
  try:
    pid = int(holder['pid'])
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, ValueError, TypeError):
    return True
  started = holder.get('process_start')
  return started is None or _process_start(pid) in (None, started)


def _read(file) -> dict | None:
  try:
    holder = json.loads(file.read_text())
  except FileNotFoundError:
    return None
  except ValueError:  # a lock torn by a crash mid-write: no one holds it
    return {}
  return holder if isinstance(holder, dict) else {}


def _create(file, text: str) -> bool:
  """Writes the lock if there is none; False if there is one."""
  if paths.is_remote(file):
    if file.exists():
      return False
    file.write_text(text)
    return True
  try:
    fd = os.open(os.fspath(file), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  return True


class Lock:
  """The lock of this process on `workdir`, kept fresh by a heartbeat thread."""

  def __init__(self, workdir):
    self.file = paths.path(workdir) / NAME
    self.me = {'host': socket.gethostname(), 'pid': os.getpid(),
               'started': datetime.datetime.now(datetime.UTC).isoformat(
                   timespec='seconds'), 'token': uuid.uuid4().hex}
    if (started := _process_start(os.getpid())) is not None:
      self.me['process_start'] = started
    self._stop = threading.Event()
    self._thread = None
    self.lost: dict | None = None  # the lock as another run rewrote it

  def _text(self) -> str:
    return json.dumps(self.me | {'beat': time.time()})

  def take(self):
    if not _create(self.file, self._text()):
      holder = _read(self.file) or {}
      mine = (holder.get('host'), holder.get('pid')) == (self.me['host'], self.me['pid'])
      if holder and not mine and _alive(holder):
        raise UserError(
            f'{self.file.parent} is in use by the run of pid {holder.get("pid")} on host '
            f'{holder.get("host")} (started {holder.get("started")}); wait for it to end or '
            f'use another --workdir. If that run is gone, delete {self.file}')
      if holder and not mine:
        log.warning('taking over %s: its run (pid %s on %s, started %s) is gone', self.file,
                    holder.get('pid'), holder.get('host'), holder.get('started'))
      paths.write_whole(self.file, self._text())
    if (_read(self.file) or {}).get('token') != self.me['token']:
      raise UserError(f'{self.file.parent} was taken by another run at the same moment; '
                      'use another --workdir')
    self._thread = threading.Thread(target=self._beat, daemon=True, name='ssljax-lock')
    self._thread.start()

  def _beat(self):
    while not self._stop.wait(BEAT):
      with contextlib.suppress(OSError):
        if self._still_mine():
          paths.write_whole(self.file, self._text())
      if self.lost is not None:
        return

  def _still_mine(self) -> bool:
    """Reads the lock; records who holds it when that is no longer this run."""
    holder = _read(self.file)
    if holder is None and _create(self.file, self._text()):  # deleted by hand: taken back
      holder = _read(self.file)
    if (holder or {}).get('token') == self.me['token']:
      return True
    self.lost = holder or {}
    return False

  def check(self):
    """Raises one line when another run has taken the lock: called before each write, so
    that a run never writes beside the one that took its workdir. A lock that cannot be
    read now (a bucket that does not answer) is not taken for lost."""
    if self.lost is None:
      with contextlib.suppress(OSError):
        self._still_mine()
    if self.lost is not None:
      holder = self.lost
      taker = (f'the run of pid {holder.get("pid")} on host {holder.get("host")} (started '
               f'{holder.get("started")})' if holder else 'another writer (torn lock.json)')
      raise UserError(
          f'{self.file.parent} was taken over by {taker} (this run\'s heartbeat was over '
          f'{STALE:.0f} s old, or both took a gone run\'s lock at once); this run stopped '
          'before writing anything more, what it saved before is kept. Let that run finish, '
          'or stop it and rerun this command to continue')

  def release(self):
    self._stop.set()
    if self._thread:
      self._thread.join()
    with contextlib.suppress(OSError):
      if (_read(self.file) or {}).get('token') == self.me['token']:
        self.file.unlink()


class _NotHeld:
  """The lock of a process other than 0: the pod slice's process 0 holds the workdir."""
  def check(self):
    pass


@contextlib.contextmanager
def held(workdir):
  """Holds the workdir's lock on process 0 (the other hosts of a pod slice are its run);
  yields the lock, whose `check()` the writer calls before each write."""
  if jax.process_index() != 0:
    yield _NotHeld()
    return
  try:
    paths.path(workdir).mkdir(parents=True, exist_ok=True)
  except OSError as e:  # a bucket's client gives up after its retries with no path named
    if not paths.is_remote(workdir) or e.filename or isinstance(e, PermissionError):
      raise
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f'{workdir} cannot be reached ({first}); check the network, the bucket '
                    'name and the credentials') from None
  lock = Lock(workdir)
  lock.take()
  try:
    yield lock
  finally:
    lock.release()
