#!/usr/bin/env bash
# The paper's setting (arXiv 2602.09782 §6): DAPO-Math-17k, 400 steps, 512 prompts x 8
# responses, 8 GPUs, token-mean, no KL. Unpublished values are flexent's choices, marked below.
#
#   bash recipes/verl/paper.sh MODEL METHOD [extra Hydra overrides...]
#   MODEL:  math7b (Qwen2.5-Math-7B, max response 4096) | 7b (Qwen2.5-7B, max response 8192)
#   METHOD: grpo clip_higher clip_cov kl_cov ce_gppo id did od
#   env:    MODEL_PATH (default: the HF id), DATA_DIR (dapo-math-17k.parquet, aime-2024.parquet),
#           CKPT_DIR, NNODES, PHASE_RATIO, KL_COV_RATIO, CE_GPPO_BETA1
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

model="${1:?usage: paper.sh math7b|7b METHOD [overrides...]}"
method="${2:?usage: paper.sh math7b|7b METHOD [overrides...]}"
shift 2
case "$model" in
  math7b) hf=Qwen/Qwen2.5-Math-7B; max_resp=4096 ;;
  7b)     hf=Qwen/Qwen2.5-7B;      max_resp=8192 ;;
  *) echo "unknown model '$model' (math7b | 7b)" >&2; exit 2 ;;
esac
data="${DATA_DIR:-$HOME/data/dapo}"
margs="$(flexent_method_args "$method")" || exit 2
read -r -a method_args <<< "$margs"

flexent_launch \
  algorithm.adv_estimator=grpo \
  algorithm.use_kl_in_reward=false \
  data.train_files="$data/dapo-math-17k.parquet" \
  data.val_files="$data/aime-2024.parquet" \
  data.train_batch_size=512 \
  data.max_prompt_length=2048 \
  data.max_response_length="$max_resp" \
  data.filter_overlong_prompts=true \
  actor_rollout_ref.model.path="${MODEL_PATH:-$hf}" \
  actor_rollout_ref.model.use_remove_padding=true \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=32 \
  actor_rollout_ref.actor.ppo_epochs=1 \
  actor_rollout_ref.actor.use_dynamic_bsz=true \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$(( 2 * (2048 + max_resp) )) \
  actor_rollout_ref.actor.use_kl_loss=false \
  actor_rollout_ref.actor.entropy_coeff=0 \
  actor_rollout_ref.actor.loss_agg_mode=token-mean \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.temperature=1.0 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true \
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=$(( 4 * (2048 + max_resp) )) \
  actor_rollout_ref.rollout.val_kwargs.temperature=0.7 \
  actor_rollout_ref.rollout.val_kwargs.top_p=0.8 \
  actor_rollout_ref.rollout.val_kwargs.top_k=20 \
  actor_rollout_ref.rollout.val_kwargs.do_sample=true \
  actor_rollout_ref.rollout.val_kwargs.n=32 \
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true \
  trainer.total_training_steps=400 \
  trainer.total_epochs=100 \
  trainer.n_gpus_per_node=8 \
  trainer.nnodes="${NNODES:-1}" \
  trainer.save_freq=40 \
  trainer.test_freq=40 \
  trainer.logger='["console","tensorboard"]' \
  trainer.project_name=flexent \
  trainer.experiment_name="$model-$method" \
  trainer.default_local_dir="${CKPT_DIR:-checkpoints}/$model-$method" \
  "${method_args[@]}" \
  "$@"
