"""Sub-commands of ``evgw``.

Each module here defines ``register(subparsers)``, which adds one top-level sub-command
(``evgw config``, ``evgw can``, ``evgw meter`` …) with its own ``--help`` and sets
``func`` on the parsed arguments. :mod:`agent.cli` discovers the modules, so adding a
command touches nothing else.
"""
