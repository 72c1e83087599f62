#!/bin/bash
#SBATCH --time=UNLIMITED --gres=gpu:a100:2 --signal=B:USR1@120 --export=ALL,OMP_NUM_THREADS=4
# expect: gpus_per_node=2 gpu_model=a100 time=- warnings=--signal
echo "omp=$OMP_NUM_THREADS"
