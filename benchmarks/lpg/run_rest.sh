#!/usr/bin/env bash
# After run_all.sh: the held-out grid scored by reward rate, the initial-LPG check, y vs value, the Gymnasium ids.
set -euo pipefail
export PYTHONPATH=. OMP_NUM_THREADS=1
PY=${PY:-python}
R=benchmarks/lpg/results
nice -n 10 $PY benchmarks/lpg/compare.py --rule benchmarks/lpg/runs/main/rule.pt --envs "" --held-out lpg_long_dense \
  --score rate --seeds 8 --out $R/compare_long_dense
nice -n 10 $PY benchmarks/lpg/init_check.py --compare $R/compare/compare.json --out $R/init_check.json
nice -n 10 $PY benchmarks/lpg/y_vs_value.py --rule benchmarks/lpg/runs/main/rule.pt --env lpg_dense --lr 80 --out $R/y_vs_value
nice -n 10 $PY benchmarks/lpg/gym_held_out.py --seeds 5 --timesteps 40000 --out $R/gym
