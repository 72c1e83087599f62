#!/bin/bash
#SBATCH --time=1-12:30
#SBATCH --gpus=1
#HANEUL --time=1-2
# expect: gpus=1 time=93600
true
