"""Typed seed results: each method's results.json entry reads back and writes out unchanged."""

import json

import pytest

from ssljax.adapt import report, run as run_lib
from ssljax.adapt.results import SeedResult, Trial, seed_results

_EVALS = {'dev': {'metrics': {'accuracy': 0.75}, 'confusion_matrix': [[3, 1], [1, 3]]}}

# One seed of each method, with the keys in the order results.json has them.
RUNS = {
    'finetune': {
        'group': 'pretrained', 'init': 'pretrained', 'seed': 0, 'lr': 1e-4, 'epoch': 2,
        'val': {'accuracy': 0.5}, 'val_loss': 0.69,
        'curve': [{'epoch': 0, 'step': 0, 'val_accuracy': 0.5, 'val_loss': 0.7}],
        'losses': [0.7, 0.69],
        'grid': [{'lr': 1e-5, 'epoch': 1, 'val_accuracy': 0.25, 'val_loss': float('nan'),
                  'epochs_trained': 1},
                 {'lr': 1e-4, 'epoch': 2, 'val_accuracy': 0.5, 'val_loss': 0.69,
                  'epochs_trained': 2}],
        'evals': _EVALS, 'seconds': 3.5},
    'probe_ridge': {
        'group': 'scratch', 'init': 'scratch', 'seed': 1, 'lambda': 0.01,
        'val': {'accuracy': 0.5}, 'curve': [{'lambda': 0.01, 'val_accuracy': 0.5}],
        'evals': _EVALS, 'seconds': 0.25},
    'probe_linear': {
        'group': 'pretrained', 'init': 'pretrained', 'seed': 0, 'epoch': 3,
        'val': {'accuracy': 0.5},
        'curve': [{'epoch': 1, 'step': 4, 'loss': 0.7, 'val_accuracy': 0.5}],
        'evals': _EVALS, 'seconds': 0.5},
    'fewshot': {
        'group': 'pretrained 4-shot', 'init': 'pretrained', 'shots': 4, 'seed': 2,
        'evals': _EVALS, 'seconds': 1.0},
}


@pytest.mark.parametrize('method', list(RUNS))
def test_a_seed_result_writes_back_the_dict_it_was_read_from(method):
  one = SeedResult.from_json(RUNS[method])
  assert json.dumps(one.to_json()) == json.dumps(RUNS[method])  # same keys, same order, NaN


def test_fields_read_as_attributes():
  tuned = SeedResult.from_json(RUNS['finetune'])
  assert (tuned.lr, tuned.epoch, tuned.penalty, tuned.shots) == (1e-4, 2, None, None)
  assert tuned.grid is not None and tuned.grid[1] == Trial(1e-4, 2, 'accuracy', 0.5, 0.69, 2)
  assert SeedResult.from_json(RUNS['probe_ridge']).penalty == 0.01
  assert SeedResult.from_json(RUNS['fewshot']).curve is None


def test_a_trial_names_its_metric():
  trial = Trial(3e-5, 1, 'pearson', 0.8, 0.1, 3)
  assert trial.to_json() == {'lr': 3e-5, 'epoch': 1, 'val_pearson': 0.8, 'val_loss': 0.1,
                             'epochs_trained': 3}
  assert Trial.from_json(trial.to_json()) == trial


def test_an_unknown_key_is_an_error_not_dropped():
  with pytest.raises(ValueError, match='unknown keys'):
    SeedResult.from_json(RUNS['fewshot'] | {'predictions': [0, 1]})

# sst2 fine-tuned at the rates 1e-3,1e-2 from both inits over 2 seeds: results.json as written
# before SeedResult (each seed's step losses cut to two, the settings to the one the report
# reads), and the report.md that run wrote.
OLD_RESULTS = (
    '{"task":"sst2","method":"finetune","checkpoint":"/tmp/ckpt","checkpoint_step":6,"seeds":[0,1'
    '],"init":"both","model":{"arch":"bert","hidden_size":32,"num_layers":2,"params":33682},"sett'
    'ings":{"finetune":{"lr":"1e-3,1e-2"}},"examples":{"train":48,"dev":12},"metrics_names":["acc'
    'uracy"],"baseline_name":"majority class","baseline":{"dev":{"accuracy":0.5}},"runs":[{"group'
    '":"pretrained","init":"pretrained","seed":0,"lr":0.01,"epoch":2,"val":{"accuracy":0.6},"val_'
    'loss":0.6857427358627319,"curve":[{"epoch":0,"step":0,"val_accuracy":0.4,"val_loss":0.693511'
    '0092163086},{"epoch":1,"step":6,"loss":0.7340090870857239,"val_accuracy":0.6,"val_loss":0.68'
    '68166923522949,"seconds":0.0448917009998695,"examples_per_s":1069.239947048109},{"epoch":2,"'
    'step":12,"loss":0.6941316723823547,"val_accuracy":0.6,"val_loss":0.6857427358627319,"seconds'
    '":0.03503260599973146,"examples_per_s":1370.1521377075958}],"losses":[0.693152129650116,0.69'
    '31537985801697],"grid":[{"lr":0.001,"epoch":1,"val_accuracy":0.6,"val_loss":0.68888509273529'
    '05,"epochs_trained":2},{"lr":0.01,"epoch":2,"val_accuracy":0.6,"val_loss":0.6857427358627319'
    ',"epochs_trained":2}],"evals":{"dev":{"metrics":{"accuracy":0.5},"per_class":{"precision":[0'
    '.5,0.0],"recall":[1.0,0.0],"f1":[0.6666666666666666,0.0],"support":[6,6]},"confusion_matrix"'
    ':[[6,0],[6,0]]}},"seconds":29.42},{"group":"pretrained","init":"pretrained","seed":1,"lr":0.'
    '01,"epoch":2,"val":{"accuracy":0.4},"val_loss":0.6778518557548523,"curve":[{"epoch":0,"step"'
    ':0,"val_accuracy":0.4,"val_loss":0.6973422765731812},{"epoch":1,"step":6,"loss":0.6996357440'
    '948486,"val_accuracy":0.4,"val_loss":0.7096326947212219,"seconds":0.02938659500068752,"examp'
    'les_per_s":1633.3978128080848},{"epoch":2,"step":12,"loss":0.6834000945091248,"val_accuracy"'
    ':0.4,"val_loss":0.6778518557548523,"seconds":0.02997925599629525,"examples_per_s":1601.10711'
    '23957079}],"losses":[0.6983344554901123,0.6883801817893982],"grid":[{"lr":0.001,"epoch":1,"v'
    'al_accuracy":0.4,"val_loss":0.7009893655776978,"epochs_trained":2},{"lr":0.01,"epoch":2,"val'
    '_accuracy":0.4,"val_loss":0.6778518557548523,"epochs_trained":2}],"evals":{"dev":{"metrics":'
    '{"accuracy":0.5},"per_class":{"precision":[0.5,0.0],"recall":[1.0,0.0],"f1":[0.6666666666666'
    '666,0.0],"support":[6,6]},"confusion_matrix":[[6,0],[6,0]]}},"seconds":24.94},{"group":"scra'
    'tch","init":"scratch","seed":0,"lr":0.01,"epoch":1,"val":{"accuracy":0.6},"val_loss":0.68716'
    '58563613892,"curve":[{"epoch":0,"step":0,"val_accuracy":0.4,"val_loss":0.693817138671875},{"'
    'epoch":1,"step":6,"loss":0.735919177532196,"val_accuracy":0.6,"val_loss":0.6871658563613892,'
    '"seconds":0.03875362599501386,"examples_per_s":1238.593777164898},{"epoch":2,"step":12,"loss'
    '":0.6960907578468323,"val_accuracy":0.6,"val_loss":0.6896539926528931,"seconds":0.0253903989'
    '94204588,"examples_per_s":1890.4783658955537}],"losses":[0.6931514143943787,0.69315528869628'
    '91],"grid":[{"lr":0.001,"epoch":1,"val_accuracy":0.6,"val_loss":0.6890442371368408,"epochs_t'
    'rained":2},{"lr":0.01,"epoch":1,"val_accuracy":0.6,"val_loss":0.6871658563613892,"epochs_tra'
    'ined":2}],"evals":{"dev":{"metrics":{"accuracy":0.5},"per_class":{"precision":[0.5,0.0],"rec'
    'all":[1.0,0.0],"f1":[0.6666666666666666,0.0],"support":[6,6]},"confusion_matrix":[[6,0],[6,0'
    ']]}},"seconds":16.87},{"group":"scratch","init":"scratch","seed":1,"lr":0.01,"epoch":2,"val"'
    ':{"accuracy":0.4},"val_loss":0.6897212266921997,"curve":[{"epoch":0,"step":0,"val_accuracy":'
    '0.6,"val_loss":0.6926261186599731},{"epoch":1,"step":6,"loss":0.7024130821228027,"val_accura'
    'cy":0.4,"val_loss":0.7082715034484863,"seconds":0.02653571699920576,"examples_per_s":1808.88'
    '27221603503},{"epoch":2,"step":12,"loss":0.6880243420600891,"val_accuracy":0.4,"val_loss":0.'
    '6897212266921997,"seconds":0.033577606998733245,"examples_per_s":1429.5241469057296}],"losse'
    's":[0.6924953460693359,0.6938241124153137],"grid":[{"lr":0.001,"epoch":1,"val_accuracy":0.4,'
    '"val_loss":0.6967324614524841,"epochs_trained":2},{"lr":0.01,"epoch":2,"val_accuracy":0.4,"v'
    'al_loss":0.6897212266921997,"epochs_trained":2}],"evals":{"dev":{"metrics":{"accuracy":0.5},'
    '"per_class":{"precision":[0.5,0.0],"recall":[1.0,0.0],"f1":[0.6666666666666666,0.0],"support'
    '":[6,6]},"confusion_matrix":[[6,0],[6,0]]}},"seconds":13.94}],"metrics":{"pretrained":{"dev"'
    ':{"accuracy":{"median":0.5,"mean":0.5,"std":0.0,"values":[0.5,0.5]}}},"scratch":{"dev":{"acc'
    'uracy":{"median":0.5,"mean":0.5,"std":0.0,"values":[0.5,0.5]}}}},"seconds":85.17,"warnings":'
    '["sst2 finetune pretrained does not beat the majority class baseline on dev: accuracy 0.5000'
    ' (median of 2 seeds) vs 0.5000","sst2 finetune scratch does not beat the majority class base'
    'line on dev: accuracy 0.5000 (median of 2 seeds) vs 0.5000","sst2 finetune pretrained collap'
    'sed: it predicted one class (negative) for every dev example on all 2 seeds; try another lea'
    'rning rate or more epochs","sst2 finetune scratch collapsed: it predicted one class (negativ'
    'e) for every dev example on all 2 seeds; try another learning rate or more epochs","sst2 fin'
    'etune pretrained chose the highest learning rate of the grid, 1e-2, on every seed; the best '
    'may lie beyond it: try --set finetune.lr=1e-2,3e-2,1e-1","sst2 finetune scratch chose the hi'
    'ghest learning rate of the grid, 1e-2, on every seed; the best may lie beyond it: try --set '
    'finetune.lr=1e-2,3e-2,1e-1"]}')
OLD_REPORT = (
    '# sst2: finetune\n\ncheckpoint `/tmp/ckpt` (step 6), bert 2 x 32, 33,682 parameters; seeds'
    ' [0, 1]; train examples 48; 85 s.\n\nMedian over seeds (mean ± sample std).\n\n| run | split'
    ' | accuracy |\n|---|---|---|\n| pretrained | dev (n=12) | 0.5000 (0.5000 ± 0.0000) |\n| scr'
    'atch | dev (n=12) | 0.5000 (0.5000 ± 0.0000) |\n| baseline: majority class | dev (n=12) |'
    ' 0.5000 |\n\nLearning rate and epoch chosen on the validation split carved from train (fin'
    'etune.lr=1e-3,1e-2); validation accuracy at the best epoch of each rate:\n\n| run | seed |'
    ' lr | epoch | 1e-3 | 1e-2 |\n|---|---|---|---|---|---|\n| pretrained | 0 | 1e-2 | 2 | 0.60'
    '00 | 0.6000 |\n| pretrained | 1 | 1e-2 | 2 | 0.4000 | 0.4000 |\n| scratch | 0 | 1e-2 | 1 |'
    ' 0.6000 | 0.6000 |\n| scratch | 1 | 1e-2 | 2 | 0.4000 | 0.4000 |\n\n**Warning:** sst2 finet'
    'une pretrained does not beat the majority class baseline on dev: accuracy 0.5000 (median'
    ' of 2 seeds) vs 0.5000.\n**Warning:** sst2 finetune scratch does not beat the majority cl'
    'ass baseline on dev: accuracy 0.5000 (median of 2 seeds) vs 0.5000.\n**Warning:** sst2 fi'
    'netune pretrained collapsed: it predicted one class (negative) for every dev example on '
    'all 2 seeds; try another learning rate or more epochs.\n**Warning:** sst2 finetune scratc'
    'h collapsed: it predicted one class (negative) for every dev example on all 2 seeds; try'
    ' another learning rate or more epochs.\n**Warning:** sst2 finetune pretrained chose the h'
    'ighest learning rate of the grid, 1e-2, on every seed; the best may lie beyond it: try -'
    '-set finetune.lr=1e-2,3e-2,1e-1.\n**Warning:** sst2 finetune scratch chose the highest le'
    'arning rate of the grid, 1e-2, on every seed; the best may lie beyond it: try --set fine'
    'tune.lr=1e-2,3e-2,1e-1.\n')


def test_a_results_file_written_before_reads_back_and_reports_as_it_did():
  results = json.loads(OLD_RESULTS)
  runs = seed_results(results)
  assert [(r.init, r.seed, r.lr) for r in runs] == [
      ('pretrained', 0, 1e-2), ('pretrained', 1, 1e-2), ('scratch', 0, 1e-2), ('scratch', 1, 1e-2)]
  assert [t.lr for t in runs[0].grid or ()] == [1e-3, 1e-2]
  assert json.dumps([r.to_json() for r in runs]) == json.dumps(results['runs'])
  assert json.dumps(run_lib.summarize(results['runs'])) == json.dumps(results['metrics'])
  assert report.markdown(results) == OLD_REPORT
