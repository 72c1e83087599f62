#!/bin/sh
#SBATCH -J sleeper --gres=gpu:1 -t 5:00
# expect: name=sleeper gpus_per_node=1 time=300
sleep 300
