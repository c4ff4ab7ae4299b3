"""Identity records (facility registration): station, equipment and connectors from config.

The platforms drop status and alarms for IDs they do not know, so an ``identity`` record is
written first at every start and again whenever a reloaded config changes what it contains.
"""

from __future__ import annotations

from agent.config.schema import Config
from agent.records.bodies import (
    ConnectorInfoBody,
    EquipmentInfoBody,
    IdentityBody,
    StationInfoBody,
)


def identity_body(config: Config) -> IdentityBody:
    st, gw = config.station, config.gateway
    station = StationInfoBody(
        name=st.name,
        operator_id=gw.operator_id,
        equipment_owner_id=st.equipment_owner_id or gw.operator_id,
        country_code=st.country_code,
        area_code=st.area_code,
        address=st.address,
        station_tel=st.station_tel,
        service_tel=st.service_tel,
        station_type=st.station_type,
        station_status=st.station_status,
        park_nums=st.park_nums,
        lng=st.lng,
        lat=st.lat,
        construction=st.construction,
    )
    equipments = tuple(
        EquipmentInfoBody(
            equipment_id=e.equipment_id,
            name=e.name or e.equipment_id,
            manufacturer_id=e.manufacturer_id,
            model=e.model,
            production_date=e.production_date,
            equipment_type=e.equipment_type,
            power_kw=e.power_kw,
            new_national_standard=2 if all(c.national_standard == 2 for c in e.connectors) else 1,
            connectors=tuple(
                ConnectorInfoBody(
                    connector_id=c.connector_id,
                    name=c.name or c.connector_id,
                    connector_type=c.connector_type,
                    voltage_upper_v=c.voltage_upper_v,
                    voltage_lower_v=c.voltage_lower_v,
                    rated_voltage_v=c.voltage_upper_v,
                    current_a=c.current_a,
                    power_kw=c.power_kw,
                    national_standard=c.national_standard,
                    park_no=c.park_no or None,
                )
                for c in e.connectors
            ),
        )
        for e in config.equipment
    )
    return IdentityBody(station=station, equipments=equipments)
