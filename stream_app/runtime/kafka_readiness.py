"""Is the broker side ready for the worker: can every partition it reads be read, and every one it writes
take an ``acks=all`` write now?

A metadata answer alone says little on a cluster: with two of three brokers down, the survivor still
answers metadata requests (from a view nobody can update without the controller quorum), while reads from
partitions led by the dead brokers and writes needing two in-sync replicas wait forever without an error.
So the readiness probe asks the metadata and then checks, per partition of the worker's topics, that its
leader answers and (for the topics it writes) that enough of its in-sync replicas answer to meet
``min.insync.replicas``. A dead broker's partitions count as unready until the controller has moved
their leaders, which is exactly when they cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, LeaderNotAvailableError, NodeNotReadyError, NotEnoughReplicasError

from stream_app.config import StreamConfig
from stream_app.runtime.connections import aiokafka_kwargs


class KafkaReadiness:
    """The probe's own client (so a probe never waits behind the worker's traffic), created on first use."""

    def __init__(self, cfg: StreamConfig, read_topics: Iterable[str], write_topics: Iterable[str]) -> None:
        self.cfg = cfg
        self.read_topics = list(read_topics)
        self.write_topics = list(write_topics)
        # the broker's default when unset is unknown here: then at least the leader must answer
        self.min_insync = cfg.topics.min_insync_replicas or 1
        self._client: AIOKafkaClient | None = None

    async def check(self) -> None:
        """Returns when ready; raises a `KafkaError` naming the first partition that is not."""
        if self._client is None:
            client = AIOKafkaClient(**aiokafka_kwargs(self.cfg.kafka))
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
            client.set_topics(self.read_topics + self.write_topics)  # our topics' metadata only, not the cluster's
        client = self._client
        if not await client.force_metadata_update():
            raise KafkaError("no broker answered a metadata request")
        metadata = client.cluster
        needs: dict[TopicPartition, int] = {}  # partition -> in-sync replicas that must answer
        for topics, wanted in ((self.read_topics, 1), (self.write_topics, self.min_insync)):
            for topic in topics:
                for partition in metadata.partitions_for_topic(topic) or ():
                    tp = TopicPartition(topic, partition)
                    needs[tp] = max(needs.get(tp, 0), wanted)
        nodes = set()
        for tp in needs:
            described = metadata._partitions[tp.topic][tp.partition]  # aiokafka keeps the ISR only here
            if described.leader == -1:
                raise LeaderNotAvailableError(f"{tp.topic}[{tp.partition}] has no leader")
            nodes.update([described.leader, *described.isr])
        node_ids = sorted(nodes)
        answers = dict(zip(node_ids, await asyncio.gather(*(client.ready(n) for n in node_ids)), strict=True))
        for tp, wanted in needs.items():
            described = metadata._partitions[tp.topic][tp.partition]
            if not answers[described.leader]:
                raise NodeNotReadyError(f"broker {described.leader}, leader of {tp.topic}[{tp.partition}], "
                                        "does not answer")
            in_sync = sum(1 for n in described.isr if answers[n])
            if in_sync < wanted:
                raise NotEnoughReplicasError(f"{tp.topic}[{tp.partition}]: {in_sync} in-sync replica(s) answer, "
                                             f"{wanted} needed for acks=all")

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(KafkaError):
                await client.close()
