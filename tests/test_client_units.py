"""client.SaT's request grouping, without a server."""

from sat_triton.client.sat import SaT, default_triton_name


class FakeSaT(SaT):
    def __init__(self, limit):
        super().__init__("m", triton_url="unused:1")
        self._max_windows = limit


def test_groups_respect_batch_size_and_window_limit():
    sat = FakeSaT(limit=4)
    texts = ["a" * 10] * 5 + ["b" * 700] + ["c" * 5000] + ["d"]
    groups = list(sat._groups(texts, batch_size=3, stride=64, block_size=512))
    covered = [i for start, group, _ in groups for i in range(start, start + len(group))]
    assert covered == list(range(len(texts)))
    assert all(len(g) <= 3 for _, g, long in groups if not long)
    long_groups = [g for _, g, long in groups if long]
    assert long_groups == [["c" * 5000]]  # 5000 chars -> up to 72 windows > 4: long model


def test_default_model_name():
    assert default_triton_name("sat-3l-sm") == "sat_3l_sm"
    assert default_triton_name("segment-any-text/sat-12l-sm") == "sat_12l_sm"
