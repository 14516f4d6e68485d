"""The runtime's stored offsets on a real PostgreSQL: an instance locks the offsets of the
partition numbers in its batch only, so instances of one group apply in parallel, and a zombie
owner of the same stores (the same partition number, in any topic) is still fenced."""

from __future__ import annotations

import psycopg
import pytest

from tillstream_consumers.runtime import state
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.partitioning import TopicPartition

GROUP = "erp-inventory"


@pytest.fixture
def two(postgres_url: str) -> tuple[Database, Database]:
    first, second = Database(postgres_url), Database(postgres_url)
    for db in (first, second):
        db.migrate(state.COMPONENT, state.migrations(db))
    with first.transaction():
        state.store_offsets(
            first,
            GROUP,
            {
                TopicPartition("sales", 0): 10,
                TopicPartition("sales", 1): 20,
                TopicPartition("stock", 1): 30,
            },
            {},
        )
    return first, second


def _lock(db: Database, partition: int, topic: str = "sales") -> dict[TopicPartition, int]:
    db.execute("SET LOCAL lock_timeout = '2s'")
    return state.load_offsets(db, GROUP, [TopicPartition(topic, partition)], lock=True)


def test_instances_of_one_group_lock_only_their_own_partitions(
    two: tuple[Database, Database],
) -> None:
    first, second = two
    with first.transaction():
        assert _lock(first, 0) == {TopicPartition("sales", 0): 10}
        with second.transaction():  # the other partition: no wait
            assert _lock(second, 1) == {TopicPartition("sales", 1): 20}
    first.close()
    second.close()


def test_a_second_owner_of_the_same_partition_waits_for_the_first(
    two: tuple[Database, Database],
) -> None:
    first, second = two
    with first.transaction():
        _lock(first, 1)
        with pytest.raises(psycopg.errors.LockNotAvailable), second.transaction():
            _lock(second, 1)
    first.close()
    second.close()


def test_an_owner_of_the_same_stores_in_another_topic_waits_too(
    two: tuple[Database, Database],
) -> None:
    """A zombie still applying stock movements of partition 1 holds off the new owner of the
    sales of partition 1: the same stores, whose stock both change."""
    first, second = two
    with first.transaction():
        assert _lock(first, 1, "stock") == {TopicPartition("stock", 1): 30}
        with pytest.raises(psycopg.errors.LockNotAvailable), second.transaction():
            _lock(second, 1, "sales")
    first.close()
    second.close()


def test_offsets_of_several_topics_are_read_together(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate(state.COMPONENT, state.migrations(db))
    stored = {
        TopicPartition("sales", 0): 5,
        TopicPartition("sales", 2): 7,
        TopicPartition("stock", 1): 9,
    }
    with db.transaction():
        state.store_offsets(db, GROUP, stored, {})
    wanted = [TopicPartition("sales", 2), TopicPartition("stock", 1), TopicPartition("stock", 0)]
    assert state.load_offsets(db, GROUP, wanted) == {
        TopicPartition("sales", 2): 7,
        TopicPartition("stock", 1): 9,
    }
    assert state.load_offsets(db, "another", wanted) == {}
    db.close()
