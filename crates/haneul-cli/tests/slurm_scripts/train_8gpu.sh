#!/bin/bash
#SBATCH -J llm-sft
#SBATCH --gres=gpu:H200:8
#SBATCH -c 32
#SBATCH --mem-per-gpu=80G
#SBATCH -t 2-00:00:00
#SBATCH -A 1
#SBATCH -q high
#SBATCH --mail-type=END,FAIL
#SBATCH --mail-user=kim@kaist.ac.kr
#SBATCH --requeue
# expect: name=llm-sft gpus_per_node=8 gpu_model=H200 cpus=32 mem=655360 time=172800 project=1 priority=high

module load cuda/12.4 2>/dev/null || true
echo "gpus=$SLURM_GPUS_ON_NODE visible=$CUDA_VISIBLE_DEVICES"
