"""Weights & Biases, where a run asks for it (`metrics.wandb_project`): the rows of
metrics.jsonl logged to a W&B run as well, with the run's config. Unset, nothing is
imported and nothing changes.

The W&B run's id is derived from the workdir, so a resumed run appends to the same W&B
run (resume='allow'). `metrics.wandb_mode=offline` (or WANDB_MODE) keeps it on disk
under WORKDIR/wandb for `wandb sync`; wandb's own settings (API key, WANDB_*) apply.
"""

import hashlib
import os
import tempfile

from ssljax import paths
from ssljax.errors import require


class Run:
  """A W&B run that `metrics.Writer` logs each row to."""

  def __init__(self, config, workdir):
    wandb = require('wandb', f'metrics.wandb_project={config.metrics.wandb_project}')
    workdir = paths.path(workdir)
    local = tempfile.mkdtemp(prefix='ssljax-wandb-') if paths.is_remote(workdir) else None
    folder = local or os.fspath(workdir)
    digest = hashlib.sha1(str(workdir).encode()).hexdigest()[:10]
    self._run = wandb.init(
        project=config.metrics.wandb_project, entity=config.metrics.wandb_entity or None,
        mode=config.metrics.wandb_mode or None, dir=folder, name=workdir.name,
        id=f'{workdir.name[:40]}-{digest}', resume='allow', config=config.to_dict())

  def log(self, step: int, values: dict):
    self._run.log(values, step=step)

  def finish(self):
    self._run.finish()


def start(config, workdir) -> Run | None:
  """A W&B run for `config` when metrics.wandb_project names a project, else None."""
  return Run(config, workdir) if config.metrics.wandb_project else None
