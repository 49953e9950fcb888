"""Walker2d rollouts as the arrays cfctool reads: the user's side of `cfctool train own`.

The archive holds one `walker/rollout_NNN.npy` per rollout, (T, 17) joint positions and
velocities. The ODE-LSTM and CfC papers' protocol, written out in a few lines:

- rollouts, shuffled with the papers' seed: 15% for testing, the next 10% for validation (the
  epoch kept is the best on these), the rest for training;
- each rollout sampled irregularly (1 to 4 frames apart, seeded): the inputs are the sampled
  frames, `t` their frame numbers (so Δt is in frames), and the target of each step is the
  frame right after it (17 numbers per step);
- windows of 64 steps, 16 apart.

    python walker_to_arrays.py walker.tar.gz train.npz val.npz test.npz [--rollouts N]

(--rollouts N: only the first N rollouts of each split, for a quick check.) NumPy and the
standard library only: a user's few lines, not part of the package.
"""

import io
import sys
import tarfile

import numpy as np

WINDOW, STRIDE = 64, 16


def rollouts(archive_path):
    with tarfile.open(archive_path, "r:gz") as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".npy")),
                         key=lambda m: m.name)
        return [np.load(io.BytesIO(archive.extractfile(m).read()), allow_pickle=False) for m in members]


def windows(arrays, rng):
    xs, ts, ys = [], [], []
    for arr in arrays:
        frames = [0]
        while frames[-1] + 1 < len(arr) - 1:  # each sampled frame needs the frame after it
            frames.append(min(frames[-1] + int(rng.randint(1, 5)), len(arr) - 2))
        frames = np.array(sorted(set(frames)))
        for start in range(0, len(frames) - WINDOW, STRIDE):
            f = frames[start:start + WINDOW]
            xs.append(arr[f])
            ts.append(f.astype(np.float64))
            ys.append(arr[f + 1])
    return {"x": np.stack(xs).astype(np.float32), "t": np.stack(ts), "y": np.stack(ys).astype(np.float32)}


def main(source, train_path, val_path, test_path, limit=None):
    arrays = rollouts(source)
    order = np.arange(len(arrays))
    np.random.RandomState(125487).shuffle(order)
    n_test, n_val = int(0.15 * len(arrays)), int(0.25 * len(arrays))
    rng = np.random.RandomState(891374)
    test = windows([arrays[i] for i in order[:n_test]][:limit], rng)
    val = windows([arrays[i] for i in order[n_test:n_val]][:limit], rng)
    train = windows([arrays[i] for i in order[n_val:]][:limit], rng)
    np.savez(train_path, **train)
    np.savez(val_path, **val)
    np.savez(test_path, **test)


if __name__ == "__main__":
    args = sys.argv[1:]
    rollout_limit = None
    if "--rollouts" in args:
        at = args.index("--rollouts")
        rollout_limit = int(args[at + 1])
        del args[at:at + 2]
    main(*args, limit=rollout_limit)
