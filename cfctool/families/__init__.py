"""Model families: one module each, one line each in FAMILIES (torch-free to import)."""

from __future__ import annotations

from cfctool.errors import ConfigError
from cfctool.families import cfc, cfc_ncp, ltc, ode, reduced
from cfctool.families.base import Family
from cfctool.settings import Setting

FAMILIES: dict[str, Family] = {f.name: f for f in (
    cfc.FAMILY,
    cfc.DEEP,
    cfc_ncp.FAMILY,
    ltc.FAMILY,
    ode.CONV,
    ode.RNN,
    reduced.FAMILY,
)}


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"unknown arch '{name}'; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def arch_settings() -> dict[str, Setting]:
    """Every family's settings by name; a name shared by families is one setting."""
    out: dict[str, Setting] = {}
    for family in FAMILIES.values():
        for s in family.settings:
            out.setdefault(s.name, s)
    return out


def normalise(arch: dict) -> dict:
    """An arch record in the current form (format-1 records are upgraded)."""
    family = get(arch["name"])
    return family.upgrade(arch) if family.upgrade else arch
