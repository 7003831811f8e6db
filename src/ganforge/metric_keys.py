"""Facts about metric result keys that torch-free code needs too (the run report): which are better when larger,
and which are sample counts rather than values."""
from __future__ import annotations

# metrics where a larger value is better (for keeping the best checkpoint and marking the best run)
HIGHER_IS_BETTER = frozenset({"is", "precision", "recall", "density", "coverage",
                              "class_acc", "class_acc_top5", "class_acc_real", "cas", "cas_real", "gan_test",
                              "class_precision", "class_recall", "class_density", "class_coverage", "r_precision",
                              "modes", "hq_frac"})
# result keys that are sample counts, not metric values (never a best-checkpoint criterion)
COUNT_KEYS = ("n", "n_ref")
