"""Neural Circuit Policy wiring (Lechner et al. 2020): sparse inter -> command -> motor layers.

Generated deterministically from a seed with the same draw order as the reference
library (ncps ``AutoNCP``), so a seed names the same circuit in both. The resulting masks
are stored in the checkpoint, which makes the file, not the generator, authoritative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NcpShape:
    inter: int
    command: int
    motor: int
    sensory_fanout: int
    inter_fanout: int
    recurrent_command_synapses: int
    motor_fanin: int

    @classmethod
    def auto(cls, units: int, motor: int, sparsity: float = 0.5) -> NcpShape:
        """AutoNCP's sizing rule: 40% of the non-motor neurons are command neurons."""
        if motor >= units - 2:
            raise ValueError(f"an NCP needs more than motor + 2 units (got {units} units for {motor} motor neurons)")
        density = 1.0 - sparsity
        command = max(int(0.4 * (units - motor)), 1)
        inter = units - motor - command
        return cls(
            inter=inter,
            command=command,
            motor=motor,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
        )

    @property
    def units(self) -> int:
        return self.inter + self.command + self.motor

    def layers(self) -> list[list[int]]:
        """Neuron ids per layer in processing order; ids are motor, then command, then inter."""
        m, c = self.motor, self.command
        return [list(range(m + c, self.units)), list(range(m, m + c)), list(range(m))]


def ncp_adjacency(shape: NcpShape, inputs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sensory (inputs x units), internal (units x units)) adjacency with polarities +-1."""
    rng = np.random.RandomState(seed)
    sensory = np.zeros((inputs, shape.units), dtype=np.int32)
    internal = np.zeros((shape.units, shape.units), dtype=np.int32)
    inter, command, motor = shape.layers()

    def fan(adj: np.ndarray, sources: list[int], targets: list[int], fanout: int, fill_sources: list[int]) -> None:
        """Each source reaches `fanout` random targets; targets left unreached get a mean fan-in."""
        unreached = list(targets)
        for src in sources:
            for dest in rng.choice(targets, size=fanout, replace=False):
                if dest in unreached:
                    unreached.remove(dest)
                adj[src, dest] = rng.choice([-1, 1])
        fanin = int(np.clip(int(len(sources) * fanout / len(targets)), 1, len(fill_sources)))
        for dest in unreached:
            for src in rng.choice(fill_sources, size=fanin, replace=False):
                adj[src, dest] = rng.choice([-1, 1])

    sensory_ids = list(range(inputs))
    fan(sensory, sensory_ids, inter, shape.sensory_fanout, sensory_ids)
    fan(internal, inter, command, shape.inter_fanout, inter)
    for _ in range(shape.recurrent_command_synapses):
        src, dest = rng.choice(command), rng.choice(command)
        internal[src, dest] = rng.choice([-1, 1])
    # command -> motor is drawn from the motor side: each motor neuron picks its fan-in
    unreached = list(command)
    for dest in motor:
        for src in rng.choice(command, size=shape.motor_fanin, replace=False):
            if src in unreached:
                unreached.remove(src)
            internal[src, dest] = rng.choice([-1, 1])
    fanout = int(np.clip(int(len(motor) * shape.motor_fanin / len(command)), 1, len(motor)))
    for src in unreached:
        for dest in rng.choice(motor, size=fanout, replace=False):
            internal[src, dest] = rng.choice([-1, 1])
    return sensory, internal


def cfc_layer_masks(shape: NcpShape, sensory: np.ndarray, internal: np.ndarray) -> list[np.ndarray]:
    """Per layer, a (layer size) x (layer inputs + layer size) 0/1 mask for a CfC cell's heads.

    Inputs come from the previous layer (sensory for the first); a layer's own recurrence
    is dense, as in the reference wired CfC.
    """
    masks = []
    previous = None
    for neurons in shape.layers():
        feed = np.abs(sensory[:, neurons]) if previous is None else np.abs(internal[np.ix_(previous, neurons)])
        full = np.concatenate([feed, np.ones((len(neurons), len(neurons)))], axis=0)
        masks.append(full.T.astype(np.float32))
        previous = neurons
    return masks


def fully_connected_polarity(units: int, inputs: int, seed: int = 1111) -> tuple[np.ndarray, np.ndarray]:
    """(sensory, internal) reversal-potential signs of a fully connected LTC, 2/3 excitatory."""
    rng = np.random.default_rng(seed)
    internal = np.array([[rng.choice([-1, 1, 1]) for _ in range(units)] for _ in range(units)], dtype=np.int32)
    sensory = np.array([[rng.choice([-1, 1, 1]) for _ in range(units)] for _ in range(inputs)], dtype=np.int32)
    return sensory, internal
