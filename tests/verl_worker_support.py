"""verl 0.9.1's real actor worker on CPU, in the test process (tests/test_verl_worker.py).

verl's trainer cannot run without a GPU (only GPU rollout engines are registered and its
resource pool asks Ray for GPUs), but the actor's half of a step runs in one process on CPU,
driven by the trainer's own methods (``_compute_old_log_prob``, ``_update_actor``,
``_save_checkpoint``, ``_load_checkpoint`` of verl's ``PPOTrainerSync`` or flexent's
``FlexentPPOTrainer``):

    ActorRolloutRefWorker.compute_log_prob -> TrainingWorker.infer_batch
    ActorRolloutRefWorker.update_actor -> TrainingWorker.train_mini_batch -> train_batch
      -> FSDPEngineWithLMHead.forward_backward_batch / forward_step (FSDP2)
      -> the installed loss (verl's ppo_loss, or flexent's FlexentActorLoss around it)
      -> verl.trainer.ppo.core_algos.get_policy_loss_fn(loss_mode)
    ActorRolloutRefWorker.save_checkpoint / load_checkpoint -> FSDPCheckpointManager

Stood in: Ray's worker group and TransferQueue (:class:`WorkerGroup`, :class:`TransferQueue`:
the same data movement, one process), the rollout (:func:`rollout_batch`), the dataloader.

The CPU adaptations live here and nowhere else (the plugin users load has none); all of them
are undone when :func:`cpu_verl_process` exits, so the rest of the suite sees verl as before:

1. platform: verl's platform layer falls back to CUDA without a GPU. :func:`cpu_platform`
   answers ``cpu`` / gloo; it is set with verl's ``set_platform`` and, because verl's FSDP
   engine reads the device name when it is imported (``transformer_impl.device_name``, imported
   by the plugin long before this runs), also written there.
2. process group: gloo, world size 1, on an in-memory store (no port), created before verl's
   own ``init_process_group`` (whose ``cpu:gloo,cpu:<ccl>`` backend string is invalid on CPU).
3. engine registry: ``VERL_ENGINE_DEVICE=cuda``, because verl registers its FSDP engines for
   ``cuda`` (and ``npu``) only.
4. model: FSDP2 (FSDP1's ``sync_module_states`` needs a GPU), no ``torch.compile``, no
   remove-padding (flash-attention's varlen kernels), eager attention, fp32, no rollout
   log-probs (:func:`cpu_overrides`).

verl's trl probe is *not* touched here: the plugin's compat fix
(``flexent.integrations.verl.compat``) is what lets verl build the actor next to trl 1.x.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path

import torch

A = "actor_rollout_ref"
PL = f"{A}.actor.policy_loss"
FLEXENT_TARGET = "flexent.integrations.verl.FlexentPolicyLossConfig"
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "verl"
TOTAL_STEPS = 10  # trainer.total_training_steps of every worker test
# 4 sequences per step; ppo_mini_batch_size 2 x rollout.n 1 = 2 sequences per mini-batch,
# micro-batches of 1 sequence: 2 optimizer steps of 2 micro-batches each, so from the second
# mini-batch on the ratio is not 1 and clipping acts
ROWS, MINI, MICRO = 4, 2, 1


def cpu_overrides(model_dir: str | Path) -> list[str]:
    """verl overrides of the CPU worker: the model, the batch sizes above, and adaptation 4."""
    return [
        f"{A}.model.path={model_dir}",
        f"{A}.model.use_remove_padding=false",
        f"+{A}.model.override_config.attn_implementation=eager",
        f"{A}.model.enable_gradient_checkpointing=false",
        f"{A}.actor.strategy=fsdp2",
        f"{A}.actor.fsdp_config.use_torch_compile=false",
        f"+{A}.actor.fsdp_config.mixed_precision={{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}}",
        f"{A}.actor.ppo_mini_batch_size={MINI}",
        f"{A}.actor.ppo_micro_batch_size_per_gpu={MICRO}",
        f"{A}.actor.optim.lr=3e-2",
        f"{A}.rollout.name=vllm",  # never built: role='actor' has no rollout
        f"{A}.rollout.n=1",
        f"{A}.rollout.calculate_log_probs=false",  # no rollout engine, so no rollout log-probs
        f"{A}.rollout.log_prob_micro_batch_size_per_gpu={MICRO}",
        f"data.train_batch_size={ROWS}",
        f"trainer.total_training_steps={TOTAL_STEPS}",
    ]


def recipe_overrides(method: str) -> list[str]:
    """The policy-loss overrides recipes/verl/ pass for ``method`` (common.sh's
    ``flexent_method_args``, the same lines ``paper.sh`` and ``smoke_1gpu.sh`` use)."""
    script = f'source "{RECIPES / "common.sh"}" && flexent_method_args "$1"'
    out = subprocess.run(
        ["bash", "-c", script, "_", method],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def build_model(model_dir: Path) -> Path:
    """A 1-layer Qwen2 with a character vocabulary, saved where verl's HFModelConfig reads it."""
    from flexent.models import build_char_tokenizer, build_tiny_qwen2

    tok = build_char_tokenizer("0123456789+-*/=()> ")
    build_tiny_qwen2(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0).save_pretrained(
        model_dir
    )
    tok.save_pretrained(model_dir)
    return model_dir


def cpu_platform():
    """verl's ``PlatformBase`` for the CPU (adaptation 1); built lazily (verl may be absent)."""
    from verl.plugin.platform.platform_base import PlatformBase

    def none(*args, **kwargs):
        return None

    def zero(*args, **kwargs):
        return 0

    device_module = types.SimpleNamespace(  # what verl calls on torch.cuda, answered for the CPU
        is_available=lambda: True, device_count=lambda: 1, current_device=lambda: "cpu",
        set_device=none, synchronize=none, empty_cache=none, reset_peak_memory_stats=none,
        manual_seed=torch.manual_seed, manual_seed_all=torch.manual_seed,
        get_rng_state=torch.get_rng_state, set_rng_state=torch.set_rng_state,
        max_memory_allocated=zero, max_memory_reserved=zero, memory_allocated=zero,
        memory_reserved=zero, mem_get_info=lambda *a, **k: (1 << 40, 1 << 40),
        get_device_name=lambda *a, **k: "CPU", get_device_properties=none,
        is_bf16_supported=lambda *a, **k: True,
    )  # fmt: skip

    class CPUPlatform(PlatformBase):
        device_name = property(lambda self: "cpu")
        vendor_name = property(lambda self: "cpu")
        device_module = property(lambda self: device_module)
        set_device = synchronize = set_allocator_settings = empty_cache = none
        profiler_start = profiler_stop = cudart = none

        def is_available(self):
            return True

        def current_device(self):
            return "cpu"

        def device_count(self):
            return 1

        def manual_seed(self, seed):
            torch.manual_seed(seed)

        manual_seed_all = manual_seed

        def get_device_capability(self, device_index=0):
            return (None, None)

        def communication_backend_name(self):
            return "gloo"

        def visible_devices_envvar(self):
            return "CPU_VISIBLE_DEVICES"

        def nvtx_range(self, msg):
            return contextlib.nullcontext()

        def ray_resource_name(self):
            return "CPU"

        def ray_noset_envvars(self):
            return []

        def is_ipc_supported(self):
            return False

    return CPUPlatform()


@contextlib.contextmanager
def cpu_verl_process() -> Iterator[None]:
    """Adaptations 1-3 for the duration of the block; the environment, verl's platform, the
    FSDP engine's device name, the process group and torch's RNG are restored afterwards."""
    import verl.workers.engine.fsdp.transformer_impl as fsdp_impl
    from verl.plugin.platform import platform_manager

    env = dict(os.environ)
    platform, device_name = platform_manager._current_platform, fsdp_impl.device_name
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    own_group = not torch.distributed.is_initialized()
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT="0", VERL_ENGINE_DEVICE="cuda")  # fmt: skip
    platform_manager.set_platform(cpu_platform())
    fsdp_impl.device_name = "cpu"
    if own_group:
        store = torch.distributed.HashStore()
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        if own_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        platform_manager._current_platform, fsdp_impl.device_name = platform, device_name
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(env)


def compose(overrides: list[str]):
    """verl's Hydra ``ppo_trainer`` config with ``overrides`` (as verl's main_ppo builds it)."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def build_worker(cfg):
    """``ActorRolloutRefWorker(role='actor')`` with its model and optimizer, as verl's Ray
    worker group builds it (``init_model``)."""
    from verl.workers.engine_workers import ActorRolloutRefWorker

    worker = ActorRolloutRefWorker(config=cfg.actor_rollout_ref, role="actor")
    worker.init_model()
    return worker


def rollout_batch(vocab_size: int, *, seed: int = 0):
    """The rollouts of one step as verl's v1 trainer holds them in TransferQueue.

    One dict per sample, as ``AgentLoopWorkerTQ._agent_loop_postprocess`` writes them (prompts,
    responses, input_ids, position_ids, response_mask, loss_mask), stacked by verl's
    ``list_of_dict_to_tensordict`` into jagged tensors (the lengths differ), plus one advantage
    per sequence (GRPO's layout, mixed signs) as ``_compute_advantage`` would add. Lengths
    (prompt, response) per row: (3, 6), (5, 4), (4, 5), (2, 3); advantages +1, -0.5, +0.8, -1.2.
    """
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import response_to_nested

    g = torch.Generator().manual_seed(seed)
    rows = []
    for p, r in [(3, 6), (5, 4), (4, 5), (2, 3)]:
        prompts = torch.randint(5, vocab_size, (p,), generator=g)
        responses = torch.randint(5, vocab_size, (r,), generator=g)
        ones = torch.ones(r, dtype=torch.long)
        rows.append({"prompts": prompts, "responses": responses,
                     "input_ids": torch.cat([prompts, responses]), "position_ids": torch.arange(p + r),
                     "response_mask": ones, "loss_mask": ones.clone()})  # fmt: skip
    batch = tu.list_of_dict_to_tensordict(rows)
    adv = torch.tensor([[1.0], [-0.5], [0.8], [-1.2]]).expand(ROWS, 6).contiguous()
    batch["advantages"] = response_to_nested(adv, batch["response_mask"])
    return batch


class TransferQueue:
    """TransferQueue's ``kv_batch_get`` / ``kv_batch_put`` over one in-memory batch (keys in
    order). verl's and flexent's trainer methods call them as ``transfer_queue.<name>``; the
    tests install these in their place (the real ones need TransferQueue's controller and
    storage processes)."""

    def __init__(self, batch) -> None:
        from transfer_queue import KVBatchMeta

        self.fields, self._meta = batch.clone(), KVBatchMeta
        self.keys: list[str] = [f"sample_{i}" for i in range(batch.batch_size[0])]

    def meta(self, fields: list[str] | None = None):
        """A ``KVBatchMeta`` of the whole batch, as the trainer's step holds it."""
        return self._meta(keys=list(self.keys), tags=[{} for _ in self.keys],
                          partition_id="train", fields=fields)  # fmt: skip

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        assert list(keys) == self.keys, "the stand-in serves the whole batch only"
        names = [select_fields] if isinstance(select_fields, str) else select_fields
        return (self.fields.select(*names) if names else self.fields).clone()

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        assert list(keys) == self.keys, "the stand-in serves the whole batch only"
        for name, value in fields.items() if fields is not None else []:
            self.fields[name] = value
        return self.meta()


def padded(batch, key: str) -> torch.Tensor:
    """``[B, T]`` zero-padded copy of a jagged response field."""
    return batch[key].to_padded_tensor(0.0)


class EngineState:
    """The actor engine's parameters, optimizer and lr-scheduler state, taken now and put back
    with :meth:`restore` (each test starts from the same weights as the batch's pi_old)."""

    def __init__(self, worker) -> None:
        import copy

        self.worker, engine = worker, worker.actor.engine
        self.params = [p.detach().clone() for p in engine.module.parameters()]
        self.optim = copy.deepcopy(engine.optimizer.state_dict())
        self.sched = copy.deepcopy(engine.lr_scheduler.state_dict())
        self.loss_fn = worker.loss_fn  # verl's own: partial(ppo_loss, config=actor config)

    def restore(self) -> None:
        import copy

        engine = self.worker.actor.engine
        with torch.no_grad():
            for p, saved in zip(engine.module.parameters(), self.params, strict=True):
                p.copy_(saved)
        engine.optimizer.load_state_dict(copy.deepcopy(self.optim))
        engine.lr_scheduler.load_state_dict(copy.deepcopy(self.sched))
        self.worker.set_loss_fn(self.loss_fn)


def full_params(worker) -> list[torch.Tensor]:
    """The actor's parameters as plain tensors (FSDP2 holds DTensors)."""
    return [
        (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
        for p in worker.actor.engine.module.parameters()
    ]


class WorkerGroup:
    """verl's Ray worker group for the one in-process ``worker``, reading ``tq``.

    verl's trainer passes a ``KVBatchMeta``; verl's dispatch (``transferqueue_utils``:
    ``_async_meta_to_realdata``, ``_async_update_meta_with_output``) fetches the batch from
    TransferQueue, turns each ``extra_info`` entry into non-tensor data of it, calls the worker,
    and for ``compute_log_prob`` puts the tensor outputs back and returns the new meta (its
    non-tensor outputs in ``extra_info``), for ``update_actor`` returns the worker's output.
    ``extra_info`` and ``outputs`` keep what the trainer sent and the worker returned.
    """

    def __init__(self, worker, tq: TransferQueue) -> None:
        self.worker, self.tq, self.outputs, self.extra_info = worker, tq, [], []

    def _data(self, meta):
        from verl.utils import tensordict_utils as tu

        data = self.tq.kv_batch_get(meta.keys, meta.partition_id, meta.fields)
        self.extra_info.append(dict(meta.extra_info))
        for key, value in meta.extra_info.items():
            tu.assign_non_tensor_data(data, key, value)
        return data

    def compute_log_prob(self, meta):
        from tensordict import NonTensorData, TensorDict

        out = self.worker.compute_log_prob(self._data(meta))
        self.outputs.append(out)
        tensors = {k: v for k, v in out.items() if not isinstance(v, NonTensorData)}
        new = self.tq.kv_batch_put(meta.keys, meta.partition_id,
                                   TensorDict(tensors, batch_size=[len(meta)]))  # fmt: skip
        new.extra_info = {k: v.data for k, v in out.items() if isinstance(v, NonTensorData)}
        return new

    def update_actor(self, meta):
        self.outputs.append(self.worker.update_actor(self._data(meta)))
        return self.outputs[-1]

    def set_loss_fn(self, loss_fn) -> None:
        self.worker.set_loss_fn(loss_fn)

    def save_checkpoint(self, *args, **kwargs) -> None:
        self.worker.save_checkpoint(*args, **kwargs)

    def load_checkpoint(self, *args, **kwargs) -> None:
        self.worker.load_checkpoint(*args, **kwargs)


def trainer(cls, cfg, wg, *, global_steps: int = 1):
    """A ``cls`` (verl's ``PPOTrainerSync`` or flexent's ``FlexentPPOTrainer``) with only what
    its old-log-prob, actor-update and checkpoint methods read: no Ray, no rollout, no dataset.
    The dataloader and checkpoint callback are stand-ins with the methods verl calls."""
    t = object.__new__(cls)
    t.config, t.actor_rollout_wg, t.global_steps = cfg, wg, global_steps
    t.total_training_steps, t.distillation_config, t.use_critic = TOTAL_STEPS, None, False
    t.train_dataloader = types.SimpleNamespace(state_dict=dict, load_state_dict=lambda state: None)
    t.checkpoint_callback = types.SimpleNamespace(on_save=lambda **kwargs: None)
    return t


def actor_step(t) -> dict:
    """The actor's half of a verl step, through the trainer's own methods: the old-log-prob
    pass (``_compute_old_log_prob``: pi_old's log-probs and entropy), then ``_update_actor``.
    Returns the step's metrics as verl logs them (reduced over the mini-batches)."""
    metrics: dict = {}
    meta = t._compute_old_log_prob(t.actor_rollout_wg.tq.meta(), metrics)
    t._update_actor(meta, metrics)
    return metrics


def worker_metrics(wg) -> dict:
    """The worker's own metrics of the last update: one value per mini-batch."""
    return dict(wg.outputs[-1]["metrics"])
