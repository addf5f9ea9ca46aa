"""The Ray layer, and the only package that imports ray.

- `cluster`: connect to a cluster, or start a private local instance (127.0.0.1, no dashboard);
- `train`, `train_job`: one candidate as a Ray Train `TorchTrainer` (DDP) around `engine.fit`;
- `tune`: sweeps with Ray Tune + Optuna, each trial a Ray Train run;
- `serve`: Ray Serve deployment and server process around the app of `cnnsweep.serving`.

Everything below this package is plain PyTorch (`config`, `data`, `transforms`, `models`, `engine`,
`checkpoint`, `analysis`) or plain Python (`sweep`, `export`, `serving`); import-linter contracts in
pyproject.toml keep it that way. Nothing is imported here eagerly: `import cnnsweep.distributed` is cheap.
"""
