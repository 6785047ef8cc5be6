"""Training one fold and cross-validating: the fit loop and its callbacks (`train`), the run dir's
layout (`run_layout`, also the baseline dir's), loading runs and resuming (`runs`), recording-level
validation (`validation`), `cv` and its report (`report`, `report_md`).

May import: every stage before it (pictures ... model).
"""
