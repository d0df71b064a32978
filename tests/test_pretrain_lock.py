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
from ssljax.pretrain.hooks import Hook

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


def test_a_live_holder_on_this_host_keeps_its_lock_however_old_its_heartbeat(tmp_path,
                                                                           live_pid):
  """A suspended laptop or a paused VM: the process is alive, its heartbeat is an hour old."""
  holder = _hold(tmp_path, live_pid, beat=time.time() - 3600)
  with pytest.raises(UserError, match=f'in use by the run of pid {live_pid}'):
    lock.Lock(tmp_path).take()
  assert json.loads((tmp_path / lock.NAME).read_text()) == holder


def test_a_reused_pid_does_not_keep_a_gone_runs_lock(tmp_path, live_pid, caplog):
  """The pid is alive but is another process than the one that took the lock."""
  _hold(tmp_path, live_pid)
  holder = json.loads((tmp_path / lock.NAME).read_text()) | {'process_start': '1'}
  (tmp_path / lock.NAME).write_text(json.dumps(holder))
  with caplog.at_level(logging.WARNING), lock.held(tmp_path):
    pass
  assert 'is gone' in caplog.text


def test_the_heartbeat_never_writes_over_a_lock_taken_from_it(tmp_path, monkeypatch):
  monkeypatch.setattr(lock, 'BEAT', 0.01)
  mine = lock.Lock(tmp_path)
  mine.take()
  taker = _hold(tmp_path, 1, host='other-vm')
  time.sleep(0.3)  # many heartbeats
  with pytest.raises(UserError) as raised:
    mine.check()
  mine.release()
  assert json.loads((tmp_path / lock.NAME).read_text()) == taker
  message = str(raised.value)
  assert '\n' not in message and 'taken over by the run of pid 1 on host other-vm' in message


def test_a_lock_deleted_by_hand_is_taken_back(tmp_path):
  mine = lock.Lock(tmp_path)
  mine.take()
  (tmp_path / lock.NAME).unlink()
  mine.check()
  assert json.loads((tmp_path / lock.NAME).read_text())['token'] == mine.me['token']
  mine.release()


def test_a_run_whose_lock_was_taken_stops_before_its_next_write(tmp_path, corpus_file):
  """Its heartbeat stalled (a bucket that did not answer for 10 minutes) and a run on
  another host took the workdir: this run stops with one line before its next checkpoint
  or metrics row, and leaves the other run's lock, checkpoints and rows alone."""
  taken = {}

  def take_over(info):
    if info.step == 2:
      taken.update(_hold(tmp_path, 4242, host='other-vm'))
    return {'hook': 1.0}

  config = tiny_config(corpus_file, **{'train.checkpoint_every': 3})
  with pytest.raises(UserError) as raised:
    train.pretrain(config, tmp_path, hooks=[Hook(1, take_over)])
  message = str(raised.value)
  assert '\n' not in message and 'taken over by the run of pid 4242 on host other-vm' in message
  assert json.loads((tmp_path / lock.NAME).read_text()) == taken  # not released, not beaten
  assert not (tmp_path / 'checkpoints').exists() or not any(
      (tmp_path / 'checkpoints').iterdir())
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert max(row['step'] for row in rows) <= 2 and all('hook' not in row or row['step'] < 2
                                                       for row in rows)
