"""Geo-queries (ETSI GS CIM 009 V1.8.1 §4.10) and the GeoJSON representation of entities (§4.5.16).

A geo-query names a reference geometry (`geometry` + `coordinates`, GeoJSON, WGS84 longitude/latitude), a
relation (`georel`: near;maxDistance==m, near;minDistance==m, within, contains, intersects, equals, disjoint,
overlaps) and the GeoProperty compared (`geoproperty`, default `location`). Topological relations are evaluated
by shapely on the coordinates as given (planar, as RFC 7946 §3.1.11 reads GeoJSON). Distances for `near` are in
metres: both geometries are projected onto a local equirectangular plane centred on the reference geometry, which
is exact for points to within a few metres over tens of kilometres (a meter's neighbourhood) and degrades only
for distances of hundreds of kilometres.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from ._context import ActiveContext
from ._errors import bad_request
from ._model import GEO_TYPES, Entity

DEFAULT_GEOPROPERTY = "location"
_EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), metres
_RELATIONS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")


@dataclass(frozen=True)
class GeoQuery:
    """A validated geo-query: call `matches(entity)`."""

    relation: str
    reference: BaseGeometry
    geoproperty: str  # expanded attribute name
    max_distance_m: float | None = None
    min_distance_m: float | None = None

    def matches(self, entity: Entity) -> bool:
        attribute = entity.attrs.get(self.geoproperty)
        if not attribute or attribute.get("type") != "GeoProperty":
            return False  # an entity without the GeoProperty satisfies no relation, not even disjoint
        target = _shape(json.dumps(attribute.get("value"), sort_keys=True))
        if target is None:
            return False
        try:
            return self._relates(target)
        except (shapely.errors.GEOSException, ValueError):  # a stored geometry GEOS cannot relate: no match
            return False

    def _relates(self, target: BaseGeometry) -> bool:
        if self.relation == "near":
            distance = _distance_m(self.reference, target)
            return ((self.max_distance_m is None or distance <= self.max_distance_m)
                    and (self.min_distance_m is None or distance >= self.min_distance_m))
        test: Callable[[BaseGeometry, BaseGeometry], bool] = {
            "within": lambda t, r: t.within(r),
            "contains": lambda t, r: t.contains(r),
            "intersects": lambda t, r: t.intersects(r),
            "equals": lambda t, r: t.equals(r),
            "disjoint": lambda t, r: t.disjoint(r),
            "overlaps": lambda t, r: t.overlaps(r),
        }[self.relation]
        return test(target, self.reference)


def parse_geo_query(georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None,
                    ctx: ActiveContext) -> GeoQuery | None:
    """A GeoQuery from its four members (URI parameters or a `geoQ` object); None when none is given.

    `coordinates` is a JSON text (URI parameter) or already a JSON array (geoQ in a body). Any member missing
    or malformed is 400 BadRequestData (§4.10: georel, geometry and coordinates go together).
    """
    if georel is None and geometry is None and coordinates is None:
        if geoproperty is not None:
            raise bad_request("Invalid geo-query", "geoproperty without georel, geometry and coordinates")
        return None
    missing = [n for n, v in (("georel", georel), ("geometry", geometry), ("coordinates", coordinates)) if v is None]
    if missing:
        raise bad_request("Invalid geo-query", f"georel, geometry and coordinates go together; missing "
                                               f"{', '.join(missing)}")
    assert georel is not None and geometry is not None
    relation, max_m, min_m = _parse_georel(georel)
    if geometry not in GEO_TYPES:
        raise bad_request("Invalid geo-query", f"geometry {geometry!r}: use one of {', '.join(sorted(GEO_TYPES))}")
    if isinstance(coordinates, str):
        try:
            coordinates = json.loads(coordinates)
        except ValueError:
            raise bad_request("Invalid geo-query", f"coordinates {coordinates[:100]!r} are not a JSON array") from None
    if not isinstance(coordinates, list):
        raise bad_request("Invalid geo-query", "coordinates must be a JSON array")
    reference = _shape(json.dumps({"type": geometry, "coordinates": coordinates}))
    if reference is None or not reference.is_valid:
        raise bad_request("Invalid geo-query", f"coordinates {json.dumps(coordinates)[:100]} are not a valid "
                                               f"{geometry} (RFC 7946 §3.1; rings closed, not self-intersecting)")
    name = geoproperty or DEFAULT_GEOPROPERTY
    return GeoQuery(relation, reference, ctx.expand(name), max_m, min_m)


def _parse_georel(text: str) -> tuple[str, float | None, float | None]:
    relation, *modifiers = [part.strip() for part in text.split(";")]
    if relation not in _RELATIONS:
        raise bad_request("Invalid geo-query", f"georel {relation!r}: use one of {', '.join(_RELATIONS)}")
    max_m = min_m = None
    for modifier in modifiers:
        key, sep, raw = modifier.partition("==")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if relation != "near" or not sep or key not in ("maxDistance", "minDistance") or value < 0:
            raise bad_request("Invalid geo-query", f"georel {text!r}: only near takes maxDistance==<metres> or "
                                                   "minDistance==<metres>")
        if key == "maxDistance":
            max_m = value
        else:
            min_m = value
    if relation == "near" and max_m is None and min_m is None:
        raise bad_request("Invalid geo-query", "georel near needs maxDistance==<metres> or minDistance==<metres>")
    return relation, max_m, min_m


@lru_cache(maxsize=4096)
def _shape(geojson: str) -> BaseGeometry | None:
    """A shapely geometry of a GeoJSON text, None when it is not a valid one (cached: locations rarely move)."""
    try:
        geometry = shape(json.loads(geojson))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, shapely.errors.GEOSException):
        return None
    return None if geometry.is_empty else geometry


def _distance_m(reference: BaseGeometry, target: BaseGeometry) -> float:
    """Metres between two lon/lat geometries on a plane tangent at the reference's centroid."""
    centre = reference.centroid
    lat0 = math.radians(centre.y)
    scale_x = _EARTH_RADIUS_M * math.cos(lat0) * math.pi / 180
    scale_y = _EARTH_RADIUS_M * math.pi / 180

    def project(coords: Any) -> Any:  # an (n, 2) array of lon/lat -> metres east/north of the centre
        return (coords - (centre.x, centre.y)) * (scale_x, scale_y)

    return float(shapely.transform(reference, project).distance(shapely.transform(target, project)))


def feature(rendered: dict[str, Any], entity: Entity, geometry_property: str) -> dict[str, Any]:
    """One entity as a GeoJSON Feature (§4.5.16): geometry from the chosen GeoProperty, the rest in properties."""
    attribute = entity.attrs.get(geometry_property)
    geometry = attribute.get("value") if attribute and attribute.get("type") == "GeoProperty" else None
    properties = {k: v for k, v in rendered.items() if k != "id"}
    return {"id": entity.id, "type": "Feature", "geometry": geometry, "properties": properties}


def feature_collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A query result as a GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}
