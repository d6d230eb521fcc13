"""A model directory whose ``model.pt`` is damaged is refused in one line, naming the file."""

import pytest
import torch

from rtml import InputError
from rtml.model import load_model


@pytest.mark.parametrize("content", [b"", b"not a torch file" * 64, "truncated", "foreign"])
def test_a_damaged_model_file_is_refused(tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "truncated":
        torch.save({"model": "persistence"}, path)
        path.write_bytes(path.read_bytes()[:40])
    elif content == "foreign":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match="model.pt' is not a"):
        load_model(tmp_path)
