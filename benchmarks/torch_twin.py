"""The PyTorch twin of ssljax's training setup, and the benchmarks' other torch helpers.

`adamw` and `update` train a torch model as `ssljax.pretrain.optimizer.build` trains an
ssljax one from the same `optimizer` config: AdamW with BERT's weight-decay exclusions,
ssljax's warmup-then-decay learning rate at each update, global-norm clipping. They are
written as a transformers user would write them, not from ssljax's optax code, and
tests/test_learning_parity.py matches them step by step against ssljax, so the PyTorch side
of every benchmark trains as the parity-tested twin does.
"""

import math

import torch
import transformers

import bench_common


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
  """AdamW groups: decay on Linear/Conv1D weights and embeddings, none on LayerNorm
  parameters or biases (chosen by module type: GPT-2's LayerNorms are not named so); a tied
  weight (the MLM decoder is the word embedding) is counted once."""
  decay, no_decay, seen = [], [], set()
  for module in model.modules():
    for name, p in module.named_parameters(recurse=False):
      if id(p) in seen or not p.requires_grad:
        continue
      seen.add(id(p))
      skip = isinstance(module, torch.nn.LayerNorm) or name == 'bias'
      (no_decay if skip else decay).append(p)
  return [{'params': decay, 'weight_decay': weight_decay},
          {'params': no_decay, 'weight_decay': 0.0}]


def lr_factor(opt, total_steps: int):
  """Update k's learning rate over the peak, as ssljax's schedule gives it: linear warmup
  over `warmup_steps` (or `warmup_fraction` of the run), at most total_steps - 1, then
  linear or cosine decay to `end_learning_rate` over the remaining steps, or constant."""
  warmup = (round(opt.warmup_fraction * total_steps) if opt.warmup_fraction
            else opt.warmup_steps)
  warmup = min(warmup, max(total_steps - 1, 0))
  decay_steps = max(total_steps - warmup, 1)
  end = opt.end_learning_rate / opt.learning_rate

  def factor(step: int) -> float:
    if step < warmup:
      return step / warmup
    done = min(step - warmup, decay_steps) / decay_steps
    if opt.decay == 'linear':
      return 1 - (1 - end) * done
    if opt.decay == 'cosine':
      return end + (1 - end) * (1 + math.cos(math.pi * done)) / 2
    return 1.0

  return factor


def adamw(model: torch.nn.Module, opt, total_steps: int, *, fused: bool = False):
  """(torch.optim.AdamW, its LambdaLR schedule) for `model` as ssljax's optimizer for the
  config `opt` (learning_rate, b1, b2, eps, weight_decay and the schedule's fields) over
  `total_steps` updates; `fused`: torch's one-kernel AdamW."""
  optimizer = torch.optim.AdamW(param_groups(model, opt.weight_decay), lr=opt.learning_rate,
                                betas=(opt.b1, opt.b2), eps=opt.eps, fused=fused)
  return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(opt, total_steps))


def update(optimizer, schedule, clip_norm: float) -> torch.Tensor:
  """One update after `loss.backward()`; returns the gradients' global norm before clipping.

  Clips at `clip_norm` (not at all at 0, as ssljax), steps AdamW, then the schedule, so
  update k runs at lr(k) as in optax, and clears the gradients. clip_grad_norm_ scales by
  clip / (norm + 1e-6) where optax scales by clip / norm: a relative 1e-6.
  """
  params = [p for group in optimizer.param_groups for p in group['params']]
  norm = torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm > 0 else math.inf)
  optimizer.step()
  schedule.step()
  optimizer.zero_grad(set_to_none=True)
  return norm


def trainer(step, device):
  """A function that runs `step` on each of a list of batches and returns the last loss
  once the device is done, as `bench_common.ssljax_trainer`'s does."""

  def train(batches):
    for batch in batches:
      loss = step(batch)
    if device.type == 'cuda':
      torch.cuda.synchronize()
    return float(loss)

  return train


def bert_mlm(run) -> transformers.BertForMaskedLM:
  """Hugging Face's BertForMaskedLM of the ssljax run's model sizes, vocabulary and dropout."""
  cfg = run.model_cfg
  config = transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.mlp_dim, hidden_act='gelu', hidden_dropout_prob=cfg.dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate,
      max_position_embeddings=cfg.max_len,
      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
      pad_token_id=run.tokenizer.pad_id)
  return transformers.BertForMaskedLM(config)


def bert_mlm_trainer(run, device, bf16: bool, compiled: bool):
  """(train, model): as `bench_common.ssljax_trainer`, for `bert_mlm` trained the way a
  torch user would, with the twin's optimizer; with `bf16` the forward pass runs under
  torch.autocast (bfloat16), with `compiled` the model is `torch.compile`d (inductor,
  compiled during the warm-up steps).

  Masking runs inside the timed step, as ssljax's does on device: BERT's 80/10/10 recipe,
  drawn per token as Hugging Face's DataCollatorForLanguageModeling draws it.
  """
  torch.manual_seed(run.config.train.seed)
  model = bert_mlm(run).to(device).train()
  forward = torch.compile(model) if compiled else model
  opt_cfg, mlm_cfg = run.config.optimizer, run.config.mlm
  optimizer, schedule = adamw(model, opt_cfg, run.config.train.steps)
  tok = run.tokenizer
  special = torch.as_tensor(tok.special_ids, device=device)
  normal = torch.as_tensor(tok.normal_ids, device=device)

  def step(batch):
    t = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    ids = t['input_ids'].long()
    chosen = ((torch.rand(ids.shape, device=device) < mlm_cfg.rate)
              & (t['doc_ids'] > 0) & ~torch.isin(ids, special))
    action = torch.rand(ids.shape, device=device)
    replace = normal[torch.randint(len(normal), ids.shape, device=device)].long()
    masked = torch.where(chosen & (action < mlm_cfg.mask_fraction), tok.mask_id, ids)
    masked = torch.where(chosen & (action >= mlm_cfg.mask_fraction)
                         & (action < mlm_cfg.mask_fraction + mlm_cfg.random_fraction),
                         replace, masked)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      out = forward(input_ids=masked, attention_mask=(t['doc_ids'] > 0).long(),
                    token_type_ids=t['segment_ids'].long(), position_ids=t['positions'].long(),
                    labels=torch.where(chosen, ids, -100))
    out.loss.backward()
    update(optimizer, schedule, opt_cfg.clip_norm)
    return out.loss.detach()

  return trainer(step, device), model


def machine(torch_device, peak_flops=None) -> dict:
  """`bench_common.machine` with torch's and transformers' versions, device and threads."""
  return bench_common.machine(
      'torch', 'transformers', peak_flops=peak_flops,
      torch_device=(torch.cuda.get_device_name(torch_device) if torch_device.type == 'cuda'
                    else 'cpu'),
      torch_threads=torch.get_num_threads())
