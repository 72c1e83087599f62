#!/bin/bash
#SBATCH --job-name=ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=12:00:00
#SBATCH --partition=h200
#SBATCH --constraint=H200
#SBATCH --exclusive
# expect: name=ddp nodes=2 gpus_per_node=4 gpu_model=H200 cpus=16 time=43200 partition=h200

# The head node is the first of the job's nodes, from Slurm's compressed host list.
first=${SLURM_JOB_NODELIST%%,*}
case $first in
  *\[*) head=${first%%\[*}$(echo "${first#*\[}" | sed 's/[-,\]].*//') ;;
  *) head=$first ;;
esac
echo "nodelist=$SLURM_JOB_NODELIST head=$head nnodes=$SLURM_NNODES node_rank=$SLURM_NODEID"
echo "torchrun --nnodes=$SLURM_NNODES --nproc_per_node=$SLURM_GPUS_ON_NODE --rdzv_endpoint=$head:29500 train.py"
