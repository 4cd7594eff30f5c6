"""The domain-agnostic lakehouse framework (see README)."""

import os

# XGBoost's and scikit-learn's OpenMP threads (GNU libgomp) spin-wait between parallel regions by
# default: beside other busy processes (Airflow's other tasks, a second test worker) the spinning
# threads take the CPU the working ones need. Set before any OpenMP library is loaded, which only
# the ML steps import. The forecast-quality test, one run each: 135.6 s -> 102.2 s beside a busy
# core, 77.7 s -> 68.0 s on an idle machine. An OMP_WAIT_POLICY of the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
