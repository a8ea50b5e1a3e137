"""Scale-out on Dask distributed: key groups, shard hosts, and the coordinator's stage.

==================  ===============================================================
module              holds
==================  ===============================================================
``keygroups``       ``kg = xxh3_64(key bytes) % G`` and the assignment of key groups to workers
``shard``           :class:`ShardHost`: one Dask actor per worker, the state of many key groups
``scores``          :class:`HostScorers`: score nodes' models on a host, split by key group at a snapshot
``stage``           :class:`ShardStage`: the coordinator's node (partition, dispatch, merge, manifest)
``client``          :class:`Cluster`: ``local:N`` or ``tcp://HOST:PORT``
==================  ===============================================================

Nothing imports this package unless a cluster is asked for (``--cluster``,
``Pipeline(..., cluster=Cluster(...))``), so Dask is never imported otherwise.
See docs/scale-out.md.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Cluster": "workbench.cluster.client",
    "HostScorers": "workbench.cluster.scores",
    "ShardHost": "workbench.cluster.shard",
    "ShardStage": "workbench.cluster.stage",
    "assign": "workbench.cluster.keygroups",
    "key_group": "workbench.cluster.keygroups",
    "key_groups": "workbench.cluster.keygroups",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
