#!/usr/bin/env bash
# Launch an experiment's sweep, then write its report.
#   ./sweep.sh <experiment> [--local] [--until-decided] [-v] [overrides...]
#   ./sweep.sh critique_vs_rating                                  # every arm as a SLURM array task (submitit)
#   ./sweep.sh critique_vs_rating --local                          # on this machine, 2 arms at a time
#   ./sweep.sh critique_vs_rating --local --until-decided          # seeds in rounds until every pair is decided
#                                                                  # (hydra/sweeper=sequential; margin: study.margin)
#   ./sweep.sh critique_vs_rating hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 \
#       base=zephyr_sft_full hardware=gpu                          # the 7B study
# The sweep lives in outputs/sweeps/<sweep_name> (default: the experiment's name); run the same command
# again to finish what is missing or failed: finished arms are skipped. On one machine,
# scripts/slurm_local.sh start brings up a real SLURM cluster to try it.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 <experiment> [--local] [--until-decided] [-v] [overrides...]   (experiments: $(ls experiments | sed 's/\.yaml$//' | tr '\n' ' '))" >&2
  exit 2
fi
experiment="$1"; shift
launcher="hydra/launcher=slurm"
overrides=()
sweeper=()
for arg in "$@"; do
  case "$arg" in
    --local) launcher="hydra/launcher=parallel" ;;
    --until-decided) sweeper=("hydra/sweeper=sequential") ;;
    *) overrides+=("$arg") ;;
  esac
done
sweep_name="$experiment"
name_given=""
sweep_dir=""
wandb_mode="offline"
for arg in "${overrides[@]+"${overrides[@]}"}"; do
  case "$arg" in
    sweep_name=*) sweep_name="${arg#sweep_name=}"; name_given=1 ;;
    hydra.sweep.dir=*) sweep_dir="${arg#hydra.sweep.dir=}" ;;
    wandb.mode=*) wandb_mode="${arg#wandb.mode=}" ;;
  esac
done
sweep_dir="${sweep_dir:-outputs/sweeps/$sweep_name}"
PYTHON="${PYTHON:-python}"
status=0
[ -n "$name_given" ] || overrides+=("sweep_name=$sweep_name")
"$PYTHON" -m notus_lab --multirun "+experiment=$experiment" "$launcher" "${sweeper[@]+"${sweeper[@]}"}" "${overrides[@]}" || status=$?
# bad input (2) launched nothing: its one line is all there is to say
if [ "$status" -eq 2 ] || ! ls "$sweep_dir"/*/.hydra >/dev/null 2>&1; then exit "$status"; fi
# the report lists failed arms by name and error, so it is written whatever happened; it is also a W&B run
# (job_type=report) in the sweep's group, in the arms' W&B mode (a sequential study logged each round's itself)
if [ ${#sweeper[@]} -eq 0 ]; then wandb_arg=(--wandb "$wandb_mode"); else wandb_arg=(); fi
"$PYTHON" -m notus_lab.report "$sweep_dir" "${wandb_arg[@]+"${wandb_arg[@]}"}" >/dev/null && echo "report: $sweep_dir/report.md"
exit "$status"
