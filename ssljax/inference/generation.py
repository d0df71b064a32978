"""Text generation with a causal LM: a jitted decode loop over a KV cache.

Prompts are batched by length (`batching.by_length`). A batch is left-padded to a bucket width
(`rows.padded_length`), so every row writes its next token into the same cache slot, while
positions count each row's own tokens from 0. One program per (batch, prompt bucket,
new-token bucket, greedy or sampled) reads the prompts in one pass (prefill), then a
`lax.while_loop` adds one token per step until `max_new_tokens`, or until every row has
emitted a stop token (end-of-text); a row that stopped is padded after. Sampling keys come
from (seed, prompt index, step), so a prompt's text does not depend on the other prompts.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssljax import tokenizers
from ssljax.data.rows import padded_length
from ssljax.errors import UserError
from ssljax.inference import batching
from ssljax.pretrained import Pretrained


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How the next token is chosen: the most likely one at temperature 0, else a draw from
  the softmax of logits / temperature, kept to the `top_k` most likely tokens (0: all)
  and to the fewest tokens whose probability reaches `top_p` (nucleus sampling)."""
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0

  def check(self) -> None:
    if self.temperature < 0:
      raise UserError(f'temperature {self.temperature} (--temperature) must be >= 0; 0 is '
                      'greedy decoding')
    if self.top_k < 0:
      raise UserError(f'top_k {self.top_k} (--top-k) must be >= 0; 0 keeps every token')
    if not 0 < self.top_p <= 1:
      raise UserError(f'top_p {self.top_p} (--top-p) must lie in (0, 1]; 1 keeps every '
                      'token')


def check(pre: Pretrained, max_new_tokens: int, sampling: Sampling) -> None:
  if pre.model_cfg.arch != 'gpt':
    raise UserError(f'this checkpoint is a {pre.model_cfg.arch} encoder, which cannot '
                    'generate text; pass a causal LM (a gpt checkpoint)')
  if max_new_tokens < 1:
    raise UserError(f'max_new_tokens {max_new_tokens} (--max-new-tokens) must be at least 1')
  sampling.check()


def _choose(logits_BxV, keys_B, step, sampling):
  """A draw from the softmax of logits / temperature, the tokens outside top-k and top-p
  removed. `sampling` holds traced values: one program serves every temperature, k, p."""
  temperature, top_k, top_p = sampling
  logits_BxV = logits_BxV / temperature
  sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
  kth_Bx1 = sorted_BxV[:, jnp.where(top_k > 0, top_k, logits_BxV.shape[-1]) - 1][:, None]
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # mass of the likelier tokens
  nucleus_BxV = (before_BxV < top_p) | (top_p >= 1)
  cutoff_Bx1 = jnp.maximum(kth_Bx1, jnp.min(jnp.where(nucleus_BxV, sorted_BxV, jnp.inf),
                                             axis=-1, keepdims=True))
  logits_BxV = jnp.where(logits_BxV < cutoff_Bx1, -jnp.inf, logits_BxV)
  step_keys_B = jax.vmap(jax.random.fold_in, (0, None))(keys_B, step)
  return jax.vmap(jax.random.categorical)(step_keys_B, logits_BxV).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('graphdef', 'new_slots', 'greedy', 'pad_id'))
def _decode(graphdef, state, ids_BxP, real_BxP, keys_B, done_B, steps, sampling, stop_T, *,
            new_slots: int, greedy: bool, pad_id: int):
  """B x new_slots new tokens after the left-padded prompts; `steps` (<= new_slots) of them
  are decoded, rows already `done` (batch filler) only pad. Unless `greedy`, tokens are
  drawn by `sampling` (temperature, top_k, top_p); `stop_T` are the stop token ids."""
  batch, prompt = ids_BxP.shape
  real_BxS = jnp.concatenate([real_BxP, jnp.ones((batch, new_slots), bool)], axis=1)
  length_B = real_BxP.sum(axis=1)

  def read(state, ids_BxL, positions_BxL, cache, index):
    """The next token's logits after reading ids into the cache at slot `index`."""
    model = nnx.merge(graphdef, state)
    hidden_BxLxH, cache = model.decode(ids_BxL, positions_BxL, real_BxS, cache, index)
    return model.lm_logits(hidden_BxLxH[:, -1:])[:, 0], cache

  def pick(step, logits_BxV, done_B):
    token_B = (jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32) if greedy else
               _choose(logits_BxV, keys_B, step, sampling))
    token_B = jnp.where(done_B, pad_id, token_B)
    return token_B, done_B | jnp.isin(token_B, stop_T)

  positions_BxP = jnp.maximum(jnp.arange(prompt)[None] - (prompt - length_B)[:, None], 0)
  cache = nnx.merge(graphdef, state).init_cache(batch, prompt + new_slots)
  logits_BxV, cache = read(state, ids_BxP, positions_BxP, cache, 0)
  token_B, done_B = pick(0, logits_BxV, done_B)
  tokens_BxN = jnp.full((batch, new_slots), pad_id, jnp.int32).at[:, 0].set(token_B)

  def running(carry):
    step, _, _, _, done_B, _ = carry
    return (step < steps) & ~done_B.all()

  def step_once(carry):
    # The parameters ride in the carry: nnx.scan (scanned layers) refuses modules whose
    # variables were made outside the loop's trace.
    step, tokens_BxN, token_B, cache, done_B, state = carry
    logits_BxV, cache = read(state, token_B[:, None], (length_B + step - 1)[:, None], cache,
                             prompt + step - 1)
    token_B, done_B = pick(step, logits_BxV, done_B)
    tokens_BxN = jax.lax.dynamic_update_slice_in_dim(tokens_BxN, token_B[:, None], step, 1)
    return step + 1, tokens_BxN, token_B, cache, done_B, state

  carry = (jnp.int32(1), tokens_BxN, token_B, cache, done_B, state)
  return jax.lax.while_loop(running, step_once, carry)[1]


def _until_stop(tokens: np.ndarray, stop_ids: np.ndarray) -> np.ndarray:
  """The tokens up to and including the first stop token."""
  stops = np.flatnonzero(np.isin(tokens, stop_ids))
  return tokens[:stops[0] + 1] if len(stops) else tokens


def generate_ids(pre: Pretrained, rows: list[np.ndarray], *, max_new_tokens: int,
                 sampling: Sampling = Sampling(), seed: int = 0, batch_size: int = 8,
                 stop_ids=None) -> list[np.ndarray]:
  """New token ids after each prompt of `rows` (token ids), ending with the stop token when
  one was emitted; prompt and new tokens together fit in the model's `context_length`.
  `stop_ids` defaults to the end-of-text token; () never stops early."""
  check(pre, max_new_tokens, sampling)
  if not len(rows):
    return []
  limit = pre.model_cfg.context_length
  for i, row in enumerate(rows):
    if not len(row) or len(row) + max_new_tokens > limit:
      raise UserError(f'prompt {i + 1} has {len(row)} tokens: the model reads 1 to {limit} '
                      f'tokens, prompt and max_new_tokens ({max_new_tokens}) together; '
                      'shorten the prompt or lower --max-new-tokens')
  tok = pre.tokenizer
  stops = np.asarray([tok.sep_id] if stop_ids is None else stop_ids, np.int32)
  values = (np.float32(sampling.temperature or 1),  # unused when greedy
            np.int32(sampling.top_k), np.float32(sampling.top_p))
  graphdef, state = nnx.split(pre.model)
  batch = min(batch_size, len(rows))
  new_slots = padded_length(max_new_tokens)
  root = jax.random.key(seed)
  out: list = [None] * len(rows)  # each filled below
  for index in batching.by_length([len(r) for r in rows], batch):
    width = padded_length(max(len(rows[i]) for i in index))
    ids = np.full((batch, width), tok.pad_id, np.int32)
    real = np.zeros((batch, width), bool)
    real[:, -1] = True  # filler rows read one padding token and are done from the start
    for j, i in enumerate(index):
      ids[j, width - len(rows[i]):] = rows[i]
      real[j, width - len(rows[i]):] = True
    keys = jax.vmap(jax.random.fold_in, (None, 0))(root, np.resize(index, batch))
    done = np.arange(batch) >= len(index)
    tokens = _decode(graphdef, state, ids, real, keys, done, max_new_tokens, values, stops,
                     new_slots=new_slots, greedy=sampling.temperature == 0,
                     pad_id=tok.pad_id)
    for j, i in enumerate(index):
      out[i] = _until_stop(np.asarray(tokens[j, :max_new_tokens]), stops)
  return out


def prompt_rows(pre: Pretrained, prompts: list[str]) -> list[np.ndarray]:
  """Token ids of each prompt as the model reads it; an empty prompt is the token texts
  start from (`tokenizers.causal_start_id`)."""
  start = np.asarray([tokenizers.causal_start_id(pre.tokenizer)], np.int32)
  return [ids if len(ids) else start
          for ids in pre.tokenizer.encode(list(prompts))]


def completion(tokenizer, prompt_ids: np.ndarray, new_ids: np.ndarray) -> str:
  """The text `new_ids` add after the prompt: decoded together with the prompt, since a
  tokenizer may drop a leading space when the new tokens are decoded alone."""
  head = tokenizer.decode(prompt_ids)
  whole = tokenizer.decode(np.concatenate([prompt_ids, new_ids]))
  return whole[len(head):] if whole.startswith(head) else tokenizer.decode(new_ids)


def generate(pre: Pretrained, prompts: list[str], *, max_new_tokens: int = 32,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             batch_size: int = 8) -> list[str]:
  """The text `pre` (a causal LM) writes after each prompt: greedy
  at temperature 0, else sampled (see `Sampling`), reproducibly for a seed."""
  rows = prompt_rows(pre, prompts)
  new = generate_ids(pre, rows, max_new_tokens=max_new_tokens,
                     sampling=Sampling(temperature, top_k, top_p), seed=seed,
                     batch_size=batch_size)
  return [completion(pre.tokenizer, row, ids) for row, ids in zip(rows, new)]
