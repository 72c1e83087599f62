#!/bin/bash
#SBATCH --time=1-0
#SBATCH --gres=gpu:1

echo "running"
#SBATCH --time=5
#SBATCH --gres=gpu:8
# expect: gpus_per_node=1 time=86400 warnings=line 6
