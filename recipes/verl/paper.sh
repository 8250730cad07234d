#!/usr/bin/env bash
# The paper's setting (arXiv 2602.09782 §6): DAPO-Math-17k, 400 steps, 512 prompts x 8
# responses, 8 GPUs, token-mean, no KL. Unpublished values are flexent's choices, marked below.
#
#   bash recipes/verl/paper.sh MODEL METHOD [extra Hydra overrides...]
#   MODEL:  math7b (Qwen2.5-Math-7B: prompt 1024 + response 3072 = its 4096-token context)
#           7b     (Qwen2.5-7B: prompt 2048 + response 8192, the paper's response length)
#   METHOD: grpo clip_higher clip_cov kl_cov ce_gppo id did od cispo dppo_tv dppo_kl aspo archer
#           bapo high_entropy_minority adaptive_entropy id_tv id_dcpo vespo luspo gmpo dro clip_b
#           erc qae entropic aepo repo_r (common.sh; the rules without a method: docs/losses.md,
#           "Every rule in one table")
#   env:    MODEL_PATH (default: the HF id), DATA_DIR (dapo-math-17k.parquet, aime-2024.parquet),
#           CKPT_DIR, NNODES, PHASE_RATIO, KL_COV_RATIO, CE_GPPO_BETA1, DRO_BETA, QAE_K,
#           MAX_PROMPT_LENGTH / MAX_RESPONSE_LENGTH (override the model's lengths)
#
# Lengths (docs/verl.md "Context lengths"): verl sizes vLLM's context (rollout.max_model_len)
# from the model's max_position_embeddings and silently stops a response where prompt + response
# reach it, so prompt + response must fit the model. Qwen2.5-Math-7B has 4096 positions
# (config.json); the paper's 4096-token responses do not fit beside a prompt. We follow
# SimpleRL-Zoo (1024 + 3072) and Dr. GRPO (1024 + 3000) for it. rollout.max_model_len is set to
# prompt + response, so verl refuses at start a sum above the model's max_position_embeddings;
# prompts over max_prompt_length (chat template included) are dropped (filter_overlong_prompts).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

model="${1:?usage: paper.sh math7b|7b METHOD [overrides...]}"
method="${2:?usage: paper.sh math7b|7b METHOD [overrides...]}"
shift 2
case "$model" in
  math7b) hf=Qwen/Qwen2.5-Math-7B; max_prompt=1024; max_resp=3072 ;;  # 4096 positions
  7b)     hf=Qwen/Qwen2.5-7B;      max_prompt=2048; max_resp=8192 ;;  # 131072 positions
  *) echo "unknown model '$model' (math7b | 7b)" >&2; exit 2 ;;
esac
max_prompt="${MAX_PROMPT_LENGTH:-$max_prompt}"
max_resp="${MAX_RESPONSE_LENGTH:-$max_resp}"
max_len=$(( max_prompt + max_resp ))
flexent_check_context "${MODEL_PATH:-$hf}" "$max_len" || exit 2
data="${DATA_DIR:-$HOME/data/dapo}"
margs="$(flexent_method_args "$method")" || exit 2
read -r -a method_args <<< "$margs"

flexent_launch \
  algorithm.adv_estimator=grpo \
  algorithm.use_kl_in_reward=false \
  data.train_files="$data/dapo-math-17k.parquet" \
  data.val_files="$data/aime-2024.parquet" \
  data.train_batch_size=512 \
  data.max_prompt_length="$max_prompt" \
  data.max_response_length="$max_resp" \
  data.filter_overlong_prompts=true \
  actor_rollout_ref.model.path="${MODEL_PATH:-$hf}" \
  actor_rollout_ref.model.use_remove_padding=true \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=32 \
  actor_rollout_ref.actor.ppo_epochs=1 \
  actor_rollout_ref.actor.use_dynamic_bsz=true \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$(( 2 * max_len )) \
  actor_rollout_ref.actor.use_kl_loss=false \
  actor_rollout_ref.actor.entropy_coeff=0 \
  actor_rollout_ref.actor.loss_agg_mode=token-mean \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.max_model_len="$max_len" \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.temperature=1.0 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true \
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=$(( 4 * max_len )) \
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
