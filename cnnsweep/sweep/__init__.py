"""Sweeps without Ray: the `search:` section and its spaces (`space`), and the report built from
finished trials (`report`: leaderboard, ablation, curves, importances). `cnnsweep.distributed.tune`
runs them on Ray Tune."""
