#!/usr/bin/env bash
# Shared launcher for flexent's verl recipes (sourced by paper.sh and smoke_1gpu.sh).
# Every override below is a key of verl 0.9.1's ppo_trainer.yaml; tests/test_verl_recipes.py
# composes them with verl's real Hydra config. FLEXENT_DRY_RUN=1 prints them instead of running.

# flexent_method_args METHOD: the policy-loss overrides of one method (paper §5 baselines, §4 strategies).
flexent_method_args() {
  local pl=actor_rollout_ref.actor.policy_loss
  local flex=("$pl._target_=flexent.integrations.verl.FlexentPolicyLossConfig")
  case "$1" in
    grpo)         echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 ;;
    clip_higher)  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 ;;
    clip_cov)     echo "${flex[@]}" "$pl.loss_mode=flexent_clip_cov" \
                    "+$pl.loss_params.clip_cov_ratio=0.0002" "+$pl.loss_params.clip_cov_lb=1.0" "+$pl.loss_params.clip_cov_ub=5.0" ;;
    kl_cov)       echo "${flex[@]}" "$pl.loss_mode=flexent_kl_cov" \
                    "+$pl.loss_params.kl_cov_ratio=${KL_COV_RATIO:-0.002}" "+$pl.loss_params.kl_coef=1.0" ;;
    ce_gppo)      echo "${flex[@]}" "$pl.loss_mode=flexent_ce_gppo" \
                    "+$pl.loss_params.beta1=${CE_GPPO_BETA1:-0.75}" "+$pl.loss_params.beta2=1.0" ;;
    id|did)       echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=$1" \
                    "+$pl.strategy_params.phase_ratio=${PHASE_RATIO:-0.5}" ;;
    od)           echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=od" ;;
    cispo)        echo "${flex[@]}" "$pl.loss_mode=flexent_cispo" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 ;;
    dppo_tv|dppo_kl)
                  echo "${flex[@]}" "$pl.loss_mode=flexent_$1" "+$pl.thresholds.eps_std=${DPPO_DELTA:-0.15}" ;;
    aspo)         echo "${flex[@]}" "$pl.loss_mode=flexent_aspo" ;;
    archer)       # the forks are chosen by the current policy's entropy: verl computes it on request
                  echo "${flex[@]}" "$pl.loss_mode=flexent_archer" actor_rollout_ref.actor.calculate_entropy=true ;;
    bapo)         echo "${flex[@]}" "$pl.loss_mode=flexent_bapo" ;;
    high_entropy_minority)  # the top-20 % mask reads the current policy's entropy, as archer
                  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.top_entropy_quantile=0.2" \
                    actor_rollout_ref.actor.calculate_entropy=true ;;
    adaptive_entropy)  # Skywork-OR1: the bonus needs the current entropy and verl's own bonus off
                  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.entropy_coef=0.0" \
                    "+$pl.adaptive_entropy={target:0.2,delta:0.005,min:0.0,max:1.0}" \
                    actor_rollout_ref.actor.calculate_entropy=true actor_rollout_ref.actor.entropy_coeff=0 ;;
    id_tv)        echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=id" \
                    "+$pl.thresholds.upper={family:tv,delta:0.15,clamp:false}" \
                    "+$pl.thresholds.lower={family:tv,delta:0.15,clamp:false}" ;;
    id_dcpo)      echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=id" \
                    "+$pl.thresholds.upper={family:dcpo,eps:0.28,clip_ratio_c:10}" \
                    "+$pl.thresholds.lower={family:dcpo,eps:0.2}" ;;
    vespo)        # VESPO: TRL 1.16's kernel defaults (k, lambda 2, 3 for A >= 0; 3, 2 for A < 0), token-mean
                  echo "${flex[@]}" "$pl.loss_mode=flexent_vespo" \
                    "+$pl.loss_params.k_pos=2.0" "+$pl.loss_params.lambda_pos=3.0" \
                    "+$pl.loss_params.k_neg=3.0" "+$pl.loss_params.lambda_neg=2.0" ;;
    luspo)        # LUSPO: GSPO's sequence clip at the paper's 2e-3 / 2.5e-3, each response's token sum
                  echo "${flex[@]}" "$pl.loss_mode=flexent_luspo" \
                    actor_rollout_ref.actor.clip_ratio_low=0.002 actor_rollout_ref.actor.clip_ratio_high=0.0025 \
                    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum ;;
    gmpo)         # GMPO: log-space clip 0.4 (the paper's and callsys/GMPO's), mean over responses
                  echo "${flex[@]}" "$pl.loss_mode=flexent_gmpo" \
                    actor_rollout_ref.actor.clip_ratio_low=0.4 actor_rollout_ref.actor.clip_ratio_high=0.4 \
                    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean ;;
    dro)          # DRO: verl's own key policy_loss.dro_beta (verl has no default; 0.05 is flexent's)
                  echo "${flex[@]}" "$pl.loss_mode=flexent_dro" "$pl.dro_beta=${DRO_BETA:-0.05}" ;;
    clip_b)       # Clip_B: pi_old's entropy comes from the old-log-prob pass (flexent_sync); the
                  # authors' mu 2.5 on Trinity's ppo loss (clip 0.2 / 0.2, dual clip 3 = verl's clip_ratio_c)
                  echo "${flex[@]}" "$pl.loss_mode=flexent_clip_b" "+$pl.loss_params.mu=2.5" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 \
                    actor_rollout_ref.actor.clip_ratio_c=3.0 ;;
    erc)          # ERC: the entropy ratio also reads the current policy's entropy; the authors' DAPO
                  # recipe: band (0.95, 1.05), clip 0.2 / 0.28, dual clip 10
                  echo "${flex[@]}" "$pl.loss_mode=flexent_erc" \
                    "+$pl.loss_params.entropy_eps_low=0.05" "+$pl.loss_params.entropy_eps_high=0.05" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 \
                    actor_rollout_ref.actor.clip_ratio_c=10.0 actor_rollout_ref.actor.calculate_entropy=true ;;
    qae)          # QAE: GRPO's clip with the group's K-quantile as the baseline (flexent's estimator)
                  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 \
                    algorithm.adv_estimator=flexent_qae "+algorithm.quantile_k=${QAE_K:-0.4}" ;;
    entropic)     # EntroPIC: target's PI controller on the loss weight of p > 0.95 tokens, EntroPIC's gains
                  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=target" \
                    "+$pl.strategy_params={target:1.0,actuator:entropic,kp:1.0,ki:0.01}" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 ;;
    aepo|repo_r)  # AEPO's gate / REPO-R's zeta toward H* = the first step's rollout entropy
                  echo "${flex[@]}" "$pl.loss_mode=flexent_ppo_clip" "+$pl.strategy=$1" \
                    "+$pl.strategy_params={target:1.0}" \
                    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.2 ;;
    *) echo "unknown method '$1' (grpo clip_higher clip_cov kl_cov ce_gppo id did od cispo dppo_tv dppo_kl aspo archer bapo high_entropy_minority adaptive_entropy id_tv id_dcpo vespo luspo gmpo dro clip_b erc qae entropic aepo repo_r)" >&2; return 2 ;;
  esac
}

# flexent_check_context MODEL TOKENS: refuse when prompt + response (TOKENS) exceed the model's
# max_position_embeddings: verl sets vLLM's max_model_len from it and silently stops responses
# there. MODEL is a local directory (its config.json is read) or a hub id listed below (values
# of the models' config.json, tests/test_configs_context.py); other models are not checked here.
flexent_check_context() {
  local model="$1" tokens="$2" ctx=""
  if [[ -f "$model/config.json" ]]; then
    ctx="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("max_position_embeddings") or "")' "$model/config.json")"
  else
    case "$model" in
      Qwen/Qwen2.5-Math-7B) ctx=4096 ;;
      Qwen/Qwen2.5-7B)      ctx=131072 ;;
    esac
  fi
  if [[ -n "$ctx" ]] && (( tokens > ctx )); then
    echo "prompt + response = $tokens tokens > max_position_embeddings $ctx of $model;" \
      "lower MAX_PROMPT_LENGTH / MAX_RESPONSE_LENGTH (docs/verl.md, Context lengths)" >&2
    return 2
  fi
}

# flexent_launch ARG...: run verl's trainer with flexent's trainer mode (or print the args).
flexent_launch() {
  local args=(trainer.v1.trainer_mode=flexent_sync "$@")
  if [[ "${FLEXENT_DRY_RUN:-0}" == "1" ]]; then
    printf '%s\n' "${args[@]}"
  else
    python3 -m verl.trainer.main_ppo "${args[@]}"
  fi
}
