"""notus_lab's Hydra sweepers: `hydra/sweeper=notus` (the default) and `hydra/sweeper=sequential`."""


def register() -> None:
    """Make the sweepers known to Hydra. Hydra scans the `hydra_plugins` namespace on disk, which an editable
    install (pip install -e .) does not put on a path it walks; Hydra's own Plugins.register covers both."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.notus_lab_sweepers.sweepers import (
        NotusSweeper,
        SequentialSweeper,
    )

    for sweeper in (NotusSweeper, SequentialSweeper):
        Plugins.instance().register(sweeper)
