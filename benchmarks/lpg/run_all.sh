#!/usr/bin/env bash
# The LPG reproduction after the main meta-training run (see README.md for that command), one job at a time.
set -euo pipefail
export PYTHONPATH=. OMP_NUM_THREADS=1
PY=${PY:-python}
R=benchmarks/lpg/results
TINY="--envs lpg_dense,chain_short --lifetimes 8 --envs-per-lifetime 8 --iterations 150 --hidden 32 --lifetime-updates 100 --meta-lr 1e-3 --seed 0"
nice -n 10 $PY -m solvers.cli lpg-train $TINY --no-bandit --out benchmarks/lpg/runs/no_bandit > /dev/null
nice -n 10 $PY -m solvers.cli lpg-train $TINY --untrained-critic --out benchmarks/lpg/runs/untrained_critic > /dev/null
nice -n 10 $PY benchmarks/lpg/compare.py --rule benchmarks/lpg/runs/main/rule.pt \
  --envs lpg_dense,lpg_sparse,lpg_long,lpg_longer,chain_short,chain_short_noisy,chain_long \
  --held-out lpg_long_dense,chain_long_noisy --seeds 8 --out $R/compare
for run in tiny no_bandit untrained_critic; do
  nice -n 10 $PY benchmarks/lpg/compare.py --rule benchmarks/lpg/runs/$run/rule.pt --envs lpg_dense,chain_short \
    --seeds 8 --updates 100 --out $R/ablation_$run
done
nice -n 10 $PY benchmarks/lpg/y_vs_value.py --rule benchmarks/lpg/runs/main/rule.pt --env lpg_dense --lr 80 --out $R/y_vs_value
nice -n 10 $PY benchmarks/lpg/throughput.py --out $R/throughput.json
