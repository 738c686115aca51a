"""The Dask client for block-parallel work (``--cluster ADDRESS`` or ``--workers N``), shared by stages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any


@contextmanager
def dask_client(cluster: Any, workers: int | None) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one connected to an address, or a local cluster.

    Args:
        cluster: a ``distributed.Client``, a scheduler address, or None for a local cluster.
        workers: worker processes of the local cluster (one thread each).

    Yields:
        The client; what was started here is closed on exit.

    """
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if isinstance(cluster, Client):
            yield cluster
            return
        if cluster:
            yield stack.enter_context(Client(cluster))
            return
        local = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=None))
        yield stack.enter_context(Client(local))
