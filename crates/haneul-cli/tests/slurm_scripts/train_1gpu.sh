#!/bin/bash
#SBATCH --job-name=train-1gpu
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=30
#SBATCH --output=logs/%x-%j.out
#SBATCH --error=logs/%x-%j.err
# expect: name=train-1gpu nodes=- gpus_per_node=1 cpus=4 mem=16384 time=1800

# a fine-tuning run on one GPU
echo "start on $(hostname)"
for v in SLURM_JOB_ID SLURM_JOB_NAME SLURM_JOB_NODELIST SLURM_NNODES SLURM_NTASKS SLURM_PROCID \
         SLURM_LOCALID SLURM_NODEID SLURM_GPUS_ON_NODE SLURM_CPUS_PER_TASK SLURM_SUBMIT_DIR \
         SLURM_MEM_PER_NODE SLURM_JOB_ACCOUNT CUDA_VISIBLE_DEVICES; do
    eval "echo $v=\${$v}"
done
echo "to stderr" >&2
echo "cwd=$(pwd)"
