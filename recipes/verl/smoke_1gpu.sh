#!/usr/bin/env bash
# One-GPU smoke run: a small model, GSM8K, a few steps of flexent's `id` strategy.
#
#   python recipes/verl/gsm8k_to_parquet.py data/gsm8k_train.jsonl train.parquet   # GSM8K's jsonl, by path
#   python recipes/verl/gsm8k_to_parquet.py data/gsm8k_test.jsonl test.parquet
#   MODEL_PATH=/path/to/SmolLM2-135M-Instruct TRAIN_FILE=train.parquet VAL_FILE=test.parquet \
#     bash recipes/verl/smoke_1gpu.sh [METHOD] [extra Hydra overrides...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

method="${1:-id}"
[[ $# -gt 0 ]] && shift
margs="$(flexent_method_args "$method")" || exit 2
read -r -a method_args <<< "$margs"
max_prompt=256; max_resp=256
flexent_check_context "${MODEL_PATH:?set MODEL_PATH (a local HF model dir)}" \
  $(( max_prompt + max_resp )) || exit 2

flexent_launch \
  algorithm.adv_estimator=grpo \
  data.train_files="${TRAIN_FILE:?set TRAIN_FILE (verl parquet)}" \
  data.val_files="${VAL_FILE:?set VAL_FILE (verl parquet)}" \
  data.train_batch_size=16 \
  data.max_prompt_length="$max_prompt" \
  data.max_response_length="$max_resp" \
  data.filter_overlong_prompts=true \
  actor_rollout_ref.model.path="${MODEL_PATH:?set MODEL_PATH (a local HF model dir)}" \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=4 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8 \
  actor_rollout_ref.actor.use_kl_loss=false \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n=4 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.4 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16 \
  trainer.total_training_steps="${STEPS:-4}" \
  trainer.total_epochs=1 \
  trainer.n_gpus_per_node=1 \
  trainer.nnodes=1 \
  trainer.save_freq=2 \
  trainer.test_freq=-1 \
  trainer.val_before_train=false \
  trainer.logger='["console"]' \
  trainer.project_name=flexent \
  trainer.experiment_name="smoke-$method" \
  trainer.default_local_dir="${CKPT_DIR:-checkpoints}/smoke-$method" \
  "${method_args[@]}" \
  "$@"
