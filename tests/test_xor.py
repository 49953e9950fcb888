import torch

from cfctool.configs import DataConfig
from cfctool.data.xor import generate, task_record


def _task(**kw):
    return task_record(DataConfig(**kw))


def test_dense_labels_are_the_parity_of_the_valid_bits():
    s = generate(_task(bits=12, min_bits=3), "train", 500)
    bits = (s.x[..., 0] > 0) & s.mask
    assert torch.equal(bits.sum(1) % 2, s.y)
    lengths = s.mask.sum(1)
    assert lengths.min() >= 3 and lengths.max() <= 12 and len(set(lengths.tolist())) > 5
    assert torch.all(s.dt == 1.0)


def test_event_encoding_reconstructs_the_stream():
    s = generate(_task(bits=16, encoding="event"), "test", 300)
    for i in range(300):
        k = int(s.mask[i].sum())
        values = (s.x[i, :k, 0] > 0).long()
        runs = s.dt[i, :k].long()
        assert torch.all(values[1:] != values[:-1])  # events alternate
        assert int((values * runs).sum()) % 2 == int(s.y[i])
    assert s.dt.max() > 1  # genuinely irregular


def test_splits_are_deterministic_and_distinct():
    task = _task()
    a, b = generate(task, "test"), generate(task, "test")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(generate(task, "train", len(a)).x, a.x)
    assert abs(float(a.y.float().mean()) - 0.5) < 0.05  # balanced classes
