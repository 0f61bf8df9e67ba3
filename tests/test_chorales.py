import numpy as np
import pytest

from stemkit.data.chorales import chorale_sources, extract_satb, perform, select_sources, split_of
from stemkit.data.ensembles import ENSEMBLES, INSTRUMENTS, RANDOM_POOLS, choose_instruments, fit_to_range


def test_split_is_sha1_of_key():
    import hashlib

    for key in ("bwv269", "bwv1.6", "bwv366"):
        bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10
        assert split_of(key) == {0: "test", 1: "valid"}.get(bucket, "train")


def test_sources_are_unique_sorted_and_split_covers_all():
    sources = chorale_sources()
    keys = [s.key for s in sources]
    assert keys == sorted(set(keys)) and len(keys) > 300
    assert all(s.path.suffix in (".mxl", ".xml", ".krn") for s in sources)
    sizes = {split: len(select_sources(split, sources)) for split in ("train", "valid", "test")}
    assert sum(sizes.values()) == len(sources) and sizes["test"] > 20


def test_extract_satb_picks_named_voices():
    source = [s for s in chorale_sources() if s.key == "bwv1.6"][0]  # has a horn part besides SATB
    voices = extract_satb(source.path)
    assert voices is not None and len(voices) == 4
    means = [np.mean([n.pitch for n in v]) for v in voices]
    assert means == sorted(means, reverse=True)  # soprano highest … bass lowest


def test_fit_to_range_moves_by_octaves_only():
    cello = INSTRUMENTS["cello"]
    pitches = [20, 30, 90]
    moved = fit_to_range(pitches, cello)
    assert all(cello.low <= p <= cello.high for p in moved)
    assert all((p - q) % 12 == 0 for p, q in zip(pitches, moved))


def test_ensembles_and_random_pools():
    rng = np.random.default_rng(0)
    assert [i.name for i in choose_instruments("string", rng)] == list(ENSEMBLES["string"])
    for _ in range(20):
        chosen = choose_instruments("random", rng)
        assert all(i.name in pool for i, pool in zip(chosen, RANDOM_POOLS.values()))
    assert len(INSTRUMENTS) == 13
    with pytest.raises(ValueError):
        choose_instruments("kazoo", rng)


def test_performance_is_reproducible_and_bounded():
    voices = extract_satb([s for s in chorale_sources() if s.key == "bwv269"][0].path)
    a = perform(voices, np.random.default_rng(5), max_seconds=6.0)
    b = perform(voices, np.random.default_rng(5), max_seconds=6.0)
    c = perform(voices, np.random.default_rng(6), max_seconds=6.0)
    assert a == b and a != c
    assert 60 <= a.tempo <= 96
    notes = [n for v in a.voices for n in v]
    assert all(0 <= n.start < n.end <= 6.0 for n in notes) and all(30 <= n.velocity <= 120 for n in notes)
