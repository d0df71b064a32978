"""One seed's adaptation result and one learning rate's trial, as results.json holds them.

The methods produce a `SeedResult` per (init, seed) and, for fine-tuning, a `Trial` per
learning rate of its grid; `to_json` gives the dict results.json stores (its keys and their
order unchanged, a method's absent fields left out) and `from_json` reads one back, so the
report and the summaries read results.json files written by earlier runs.
"""

import dataclasses
from typing import Any

# (results.json key, SeedResult field) of the fields between init and evals, in file order.
_BETWEEN = (('shots', 'shots'), ('seed', 'seed'), ('layer', 'layer'), ('lr', 'lr'),
            ('lambda', 'penalty'), ('epoch', 'epoch'), ('val', 'val'), ('val_loss', 'val_loss'),
            ('curve', 'curve'), ('losses', 'losses'), ('grid', 'grid'), ('layers', 'layers'))


@dataclasses.dataclass(frozen=True)
class Trial:
  """One learning rate of a fine-tuning grid, at its best epoch on validation."""
  lr: float
  epoch: int
  metric: str  # the task's main metric, whose validation score `val` is
  val: float
  val_loss: float
  epochs_trained: int

  def to_json(self) -> dict[str, Any]:
    return {'lr': self.lr, 'epoch': self.epoch, f'val_{self.metric}': self.val,
            'val_loss': self.val_loss, 'epochs_trained': self.epochs_trained}

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> 'Trial':
    """The metric is the one its 'val_<metric>' key names."""
    metric, = (k[len('val_'):] for k in d if k.startswith('val_') and k != 'val_loss')
    return cls(lr=d['lr'], epoch=d['epoch'], metric=metric, val=d[f'val_{metric}'],
               val_loss=d['val_loss'], epochs_trained=d['epochs_trained'])


@dataclasses.dataclass(frozen=True, kw_only=True)
class SeedResult:
  """One (init, seed) of a run; None marks a field its method does not have (absent from
  results.json)."""
  group: str  # the row of the report it is summarised in: the init, with the shots
  init: str  # pretrained | scratch
  seed: int
  evals: dict[str, dict]  # split -> {'metrics', 'confusion_matrix' for classifiers, ...}
  shots: int | None = None  # fewshot: demonstrations per prompt
  layer: int | None = None  # probe: the block whose features were chosen on validation
  lr: float | None = None  # finetune: the rate chosen on validation
  penalty: float | None = None  # ridge probe: the penalty chosen ('lambda' in results.json)
  epoch: int | None = None  # finetune, linear probe: the epoch chosen
  val: dict[str, float] | None = None  # validation metrics of what was chosen
  val_loss: float | None = None  # finetune
  curve: list[dict] | None = None  # validation (and loss) by epoch, or by penalty for ridge
  losses: list[float] | None = None  # finetune: the chosen rate's loss at every step
  grid: tuple[Trial, ...] | None = None  # finetune: every rate tried
  layers: list[dict] | None = None  # probe of several blocks: each one's validation score
  seconds: float | None = None  # wall time of this seed

  def to_json(self) -> dict[str, Any]:
    """results.json's entry: the keys in its order, the fields that are None left out."""
    out: dict[str, Any] = {'group': self.group, 'init': self.init}
    for key, name in _BETWEEN:
      value = getattr(self, name)
      if value is not None:
        out[key] = [t.to_json() for t in value] if name == 'grid' else value
    out['evals'] = self.evals
    if self.seconds is not None:
      out['seconds'] = self.seconds
    return out

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> 'SeedResult':
    """A results.json entry; a key it does not know is an error rather than lost."""
    known = {'group', 'init', 'evals', 'seconds'} | {key for key, _ in _BETWEEN}
    if unknown := set(d) - known:
      raise ValueError(f'a seed result with unknown keys {sorted(unknown)}')
    fields = {name: d[key] for key, name in _BETWEEN if key in d}
    if 'grid' in fields:
      fields['grid'] = tuple(Trial.from_json(t) for t in fields['grid'])
    return cls(group=d['group'], init=d['init'], evals=d['evals'], seconds=d.get('seconds'),
               **fields)


def seed_results(results: dict[str, Any]) -> list[SeedResult]:
  """The runs of a results.json, read."""
  return [SeedResult.from_json(r) for r in results['runs']]
