#!/usr/bin/env bash
# ceco3d-train as one SLURM job without Hydra's launcher (README, "On a SLURM cluster"): one
# task per GPU; the run folder is runs/slurm-<job id> (or CECO3D_RUN_NAME). USR2 two minutes before
# the time limit makes training save last.pt and exit 140; the job then requeues itself, at most
# CECO3D_MAX_REQUEUES times (default 5), and the requeued job resumes from last.pt. Activate the
# environment first; arguments are ceco3d-train overrides:
#   sbatch --nodes=2 --partition=gpu scripts/slurm_train.sh experiment=scannet200 loss=ceco \
#       data.root=/data/scannet_prep
#SBATCH --job-name=ceco3d-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=USR2@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%j.out
set -uo pipefail

MAX_REQUEUES="${CECO3D_MAX_REQUEUES:-5}"
RESTARTS="${SLURM_RESTART_COUNT:-0}"
RUN_NAME="${CECO3D_RUN_NAME:-slurm-$SLURM_JOB_ID}"
echo "job $SLURM_JOB_ID, run $RUN_NAME: requeued $RESTARTS times (at most $MAX_REQUEUES)"

# Each task finds its rank, the world size and the rendezvous in SLURM's variables.
srun --kill-on-bad-exit=1 ceco3d-train run_name="$RUN_NAME" trainer.resume=auto "$@"
status=$?
if [[ $status -eq 140 ]]; then  # 128 + SIGUSR2: stopped for the time limit, last.pt saved
    if ((RESTARTS < MAX_REQUEUES)); then
        echo "requeueing job $SLURM_JOB_ID ($((RESTARTS + 1)) of at most $MAX_REQUEUES)"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "not requeued: requeued $RESTARTS times already (CECO3D_MAX_REQUEUES=$MAX_REQUEUES)"
    fi
fi
exit $status
