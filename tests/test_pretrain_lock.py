"""ssljax.pretrain.lock: one writer per workdir; a live holder stops a second run with one
line and keeps its lock, a dead or silent holder's lock is taken over with a warning."""

import json
import logging
import socket
import subprocess
import sys
import time

import pytest

from ssljax.errors import UserError
from ssljax.pretrain import lock, loop as train

from conftest import tiny_config


def _hold(workdir, pid, host=None, beat=None):
  holder = {'host': host or socket.gethostname(), 'pid': pid, 'started': '2026-12-02T10:00:00',
            'token': 'theirs', 'beat': time.time() if beat is None else beat}
  (workdir / lock.NAME).write_text(json.dumps(holder))
  return holder


@pytest.fixture
def live_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  yield proc.pid
  proc.kill()
  proc.wait()


def test_a_second_run_stops_and_the_first_keeps_its_workdir(tmp_path, live_pid, corpus_file):
  holder = _hold(tmp_path, live_pid)
  with pytest.raises(UserError) as raised:
    train.pretrain(tiny_config(corpus_file), tmp_path)
  message = str(raised.value)
  assert '\n' not in message and f'in use by the run of pid {live_pid} on host' in message
  assert 'started 2026-12-02T10:00:00' in message
  assert json.loads((tmp_path / lock.NAME).read_text()) == holder
  assert sorted(p.name for p in tmp_path.iterdir()) == [lock.NAME]  # nothing written


def test_a_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
  done = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  _hold(tmp_path, int(done.stdout))
  mine = lock.Lock(tmp_path)
  with caplog.at_level(logging.WARNING):
    mine.take()
  assert f'pid {int(done.stdout)}' in caplog.text and 'is gone' in caplog.text
  held = json.loads((tmp_path / lock.NAME).read_text())
  assert held['token'] == mine.me['token'] and held['host'] == socket.gethostname()
  mine.release()
  assert not (tmp_path / lock.NAME).exists()


def test_a_silent_holder_on_another_host_is_taken_over(tmp_path, caplog):
  _hold(tmp_path, 1, host='preempted-vm', beat=time.time() - lock.STALE - 1)
  with caplog.at_level(logging.WARNING), lock.held(tmp_path):
    assert json.loads((tmp_path / lock.NAME).read_text())['host'] == socket.gethostname()
  assert 'preempted-vm' in caplog.text and not (tmp_path / lock.NAME).exists()


def test_a_live_holder_on_another_host_is_respected(tmp_path):
  _hold(tmp_path, 1, host='other-vm')
  with pytest.raises(UserError, match='pid 1 on host other-vm'):
    lock.Lock(tmp_path).take()


def test_two_locks_at_once_one_wins(tmp_path):
  first, second = lock.Lock(tmp_path), lock.Lock(tmp_path)
  first.take()
  second.me['pid'] = 1  # as another process on this host (pid 1 is alive)
  with pytest.raises(UserError, match='in use by the run of pid'):
    second.take()
  first.release()
