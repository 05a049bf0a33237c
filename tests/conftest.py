import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from artifacts import make_checkpoint, make_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tok")


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    pytest.importorskip("wtpsplit")
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sat")


@pytest.fixture(scope="session")
def lookahead_checkpoint_dir(tmp_path_factory):
    pytest.importorskip("wtpsplit")
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sat-la", lookahead=4, lookahead_split_layers=1, seed=1)
