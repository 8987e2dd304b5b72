"""The pure domain: the shop's terms, the estimator, the chance to buy again, the churn rule, names and definitions (no I/O)."""
