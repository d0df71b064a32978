"""ssljax.tasks.kinds: SQuAD answer spans decoded by hand-worked logits."""

import numpy as np
import pytest

from ssljax.tasks import kinds

# Two windows over 'aa bb cc dd ee': row 0 holds aa bb cc, row 1 cc dd ee, each at
# positions 3-5 after [CLS] question [SEP]; marks are (side, row, position): logit.
_OFFSETS = np.full((2, 8, 2), -1)
_OFFSETS[0, 3:6] = [(0, 2), (3, 5), (6, 8)]
_OFFSETS[1, 3:6] = [(6, 8), (9, 11), (12, 14)]


@pytest.mark.parametrize('marks, max_answer_len, expected', [
    ({(0, 0, 3): 2, (1, 0, 4): 2, (0, 1, 4): 3, (1, 1, 5): 3}, 30, 'dd ee'),  # best window
    ({(0, 0, 3): 2, (1, 0, 4): 2, (0, 1, 0): 50, (1, 1, 1): 50}, 30, 'aa bb'),  # not [CLS]
    ({(0, 1, 3): 5, (1, 1, 5): 5, (1, 1, 4): 1}, 3, 'cc dd ee'),
    ({(0, 1, 3): 5, (1, 1, 5): 5, (1, 1, 4): 1}, 2, 'cc dd'),  # too long: next best end
    ({(0, 0, 5): 9, (1, 0, 3): 9, (1, 0, 5): 1}, 30, 'cc'),  # an end before its start
])
def test_best_spans_hand_worked(marks, max_answer_len, expected):
  logits = np.zeros((2, 2, 8))
  for (side, row, position), value in marks.items():
    logits[side, row, position] = value
  assert kinds.best_spans(logits[0], logits[1], _OFFSETS, np.array([0, 0]),
                          ['aa bb cc dd ee'], max_answer_len) == [expected]
