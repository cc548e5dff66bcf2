"""ceco3d's Hydra launchers (conf/hydra/launcher/): submitit's, with resume and bounded requeues.
Hydra loads launchers from the ``hydra_plugins`` namespace package only."""
