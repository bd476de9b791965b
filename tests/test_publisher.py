"""The publisher's partitioner places keys exactly where Kafka's default one does."""

import random

from aiokafka.partitioner import DefaultPartitioner

from bridge.publisher import partition_for


def test_keys_land_where_the_default_partitioner_puts_them() -> None:
    rng = random.Random(7)
    default = DefaultPartitioner()

    for _ in range(2_000):
        key = rng.randbytes(rng.randrange(0, 40))
        partitions = list(range(rng.randrange(1, 13)))

        expected = default(key, partitions, partitions)
        assert partition_for(key, partitions, partitions) == expected
        assert partition_for(key, partitions, partitions) == expected


def test_same_key_moves_with_the_partition_count() -> None:
    key = b"0c1f5e1a-2b4d-4e7f-9a10-7d3c2b1a0f99"

    placements = {partition_for(key, list(range(n)), []) for n in range(1, 30)}

    assert len(placements) > 1


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert partition_for(None, [0, 1, 2, 3], [2]) == 2
        assert partition_for(None, [0, 1, 2], []) in {0, 1, 2}
