"""SunSpec discovery: find the 'SunS' marker, walk the model chain, check each model against its definition.

The walk follows the SunSpec Modbus specification: after the two marker registers, each model starts with its
id and length L (registers after those two), up to the end model 0xFFFF. A device that answers but has no
marker is not SunSpec (`NotSunSpec`); a model whose L is not a valid length for its definition is reported as a
map mismatch (`FoundModel.problem`) and is not decoded, but the walk goes on by the declared L so the rest of the
map is still usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import BASE_ADDRESSES, END_MODEL_ID, SUNS_MARKER, UnknownModel, model_info
from .transport import ModbusFault, ModbusLink

MAX_MODELS = 64  # a real map has a handful; more means the walk is reading garbage


class NotSunSpec(Exception):
    """The device answered, but no 'SunS' marker sits at any well-known base address."""


@dataclass(frozen=True)
class FoundModel:
    """One model in a device's map: id, where its ID register is, its declared L, and what is wrong with it."""

    model_id: int
    address: int
    length: int
    name: str  # the SunSpec group name ("inverter_single_phase"), or "unknown"
    problem: str | None = None  # "length L, the definition has N" / "no SunSpec definition"

    @property
    def usable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class DeviceMap:
    """A device's SunSpec map, as discovered."""

    base: int
    unit: int
    models: tuple[FoundModel, ...]

    def find(self, *model_ids: int) -> FoundModel | None:
        """The first usable model among `model_ids`, in the order given."""
        for model_id in model_ids:
            for model in self.models:
                if model.model_id == model_id and model.usable:
                    return model
        return None

    def mismatches(self) -> list[FoundModel]:
        return [model for model in self.models if not model.usable]


async def discover(link: ModbusLink, unit: int) -> DeviceMap:
    """Walk the device's SunSpec map; raises ModbusFault (nothing answers) or NotSunSpec."""
    base = None
    answered = False
    last_fault: ModbusFault | None = None
    for address in BASE_ADDRESSES:
        try:
            marker = await link.read(address, 2, unit)
        except ModbusFault as fault:
            if fault.kind == "no-response":
                raise
            last_fault = fault  # an exception answer: the device is there, the address is not
            answered = True
            continue
        answered = True
        if tuple(marker) == SUNS_MARKER:
            base = address
            break
    if base is None:
        detail = f" (last answer: {last_fault.detail})" if last_fault else ""
        if not answered and last_fault:
            raise last_fault
        raise NotSunSpec(f"no 'SunS' marker at {', '.join(map(str, BASE_ADDRESSES))}{detail}")
    models: list[FoundModel] = []
    address = base + 2
    for _ in range(MAX_MODELS):
        if address + 2 > 0x10000:
            models.append(FoundModel(0, address, 0, "unknown", "the model chain runs past register 65535"))
            break
        model_id, length = await link.read(address, 2, unit)
        if model_id == END_MODEL_ID:
            break
        try:
            info = model_info(model_id)
        except UnknownModel:
            models.append(FoundModel(model_id, address, length, "unknown", "no SunSpec definition"))
        else:
            problem = None if info.length_fits(length) else (
                f"length {length}, the definition has {info.fixed_length}"
                + (f" + n x {info.repeat_length}" if info.repeat_length else ""))
            models.append(FoundModel(model_id, address, length, info.name, problem))
        address += 2 + length
    return DeviceMap(base, unit, tuple(models))
