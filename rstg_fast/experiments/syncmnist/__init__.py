"""SyncMNIST, the paper's first experiment (docs/syncmnist.md), one module per job:

* ``cli`` -- ``rstg-fast syncmnist`` (flags -> :class:`config.SyncMNISTConfig` -> ``train``);
* ``config`` -- the typed run configuration, its presets and checks;
* ``train`` -- the training loop, evaluation, checkpoints and the report;
* ``model`` -- the conv backbone and :class:`model.SyncMNISTNet`;
* ``pretrain`` -- the backbone warm-ups;
* ``plots`` -- the training-curve plot;
* ``attention`` -- ``rstg-fast syncmnist-attention``, the attention picture;
* ``make_data`` -- ``rstg-fast make-syncmnist``, shards on disk.

The data themselves are :mod:`rstg_fast.data.syncmnist`.
"""
