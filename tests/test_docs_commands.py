"""Every `ssljax ...` command that README.md and docs/ show still exists as shown.

Each command line in a shell block (continuation lines joined) names subcommands that
`--help` accepts, and every `--flag` it shows is one that subcommand takes. Synopsis lines
such as `ssljax probe|finetune|fewshot --checkpoint CKPT [--set KEY=VALUE ...]` count
once per alternative. `ssljax lm-eval` passes its arguments to lm-eval: only the
subcommand is checked, and so for the arguments after a lone `--` (Beam's, for
`ssljax prepare`).
"""

import argparse
import pathlib
import re

import pytest

from ssljax import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
PASSTHROUGH = {'lm-eval'}


def shown_commands() -> list[tuple[str, str]]:
  """(page, command line) of each `ssljax ...` line in the pages' code blocks."""
  out = []
  for page in PAGES:
    for block in re.findall(r'```[a-z]*\n(.*?)```', page.read_text(), re.S):
      for line in re.sub(r'\\\n\s*', ' ', block).splitlines():
        line = line.strip().removeprefix('$ ')
        if line.startswith('ssljax '):
          out.append((page.name, line.split(' #')[0]))
  return out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
  actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
  return dict(actions[0].choices) if actions else {}


def _resolve(words: list[str]) -> list[tuple[list[str], argparse.ArgumentParser]]:
  """(subcommand path, its parser) for each alternative the words name."""
  found = [([], cli.parser())]
  for word in words:
    nested = [(path, _subparsers(p)) for path, p in found]
    if not all(choices for _, choices in nested):
      break
    found = [(path + [w], choices[w]) for path, choices in nested for w in word.split('|')
             if w in choices]
    assert found, f'no subcommand {word!r}'
  return found


def _flags(parser: argparse.ArgumentParser) -> set[str]:
  return {s for action in parser._actions for s in action.option_strings}  # noqa: SLF001


def test_the_pages_show_commands():
  assert len(shown_commands()) >= 10


@pytest.mark.parametrize('page, line', shown_commands())
def test_a_shown_command_parses(page, line, capsys):
  words = line.split()[1:]
  alternatives = _resolve([w for w in words if not w.startswith(('-', '[', '"', "'"))][:2])
  assert alternatives and alternatives[0][0], f'{page}: {line}'
  for path, parser in alternatives:
    if path[0] in PASSTHROUGH:  # its --help is lm-eval's: the arguments reach it unparsed
      assert cli.parser().parse_args(path + ['--tasks', 'x']).lm_eval_args == ['--tasks', 'x']
      continue
    with pytest.raises(SystemExit) as done:
      cli.parser().parse_args(path + ['--help'])
    assert done.value.code == 0, f'{page}: ssljax {" ".join(path)} --help'
    ours = line.split(' -- ')[0]  # after a lone --: the arguments of Beam's runner
    shown = set(re.findall(r'(?<![\w-])--[a-z][\w-]*', ours))
    unknown = shown - _flags(parser) - {'--help'}
    assert not unknown, f'{page}: `{line}`: ssljax {" ".join(path)} has no {sorted(unknown)}'
  capsys.readouterr()
