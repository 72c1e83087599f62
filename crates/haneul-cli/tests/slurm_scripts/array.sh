#!/bin/sh
#SBATCH --job-name=sweep
#SBATCH --array=0-3%2
#SBATCH --gpus-per-node=1
#SBATCH --time=0-00:10
#SBATCH --output=sweep/%A_%a.out
# expect: name=sweep gpus_per_node=1 time=600 array=0-3%2

echo "task=$SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT array=$SLURM_ARRAY_JOB_ID job=$SLURM_JOB_ID lr=$1"
