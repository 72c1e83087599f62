#!/bin/bash
#SBATCH -J packed -N1 -n 2 --gpus-per-task=1 -t 45:30 --mem=8000 -o packed-%j.log
# expect: name=packed nodes=1 gpus_per_node=2 time=2730 mem=8000 ntasks=2

echo "packed ntasks=$SLURM_NTASKS gpus=$SLURM_GPUS_ON_NODE"
