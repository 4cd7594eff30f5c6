"""The project's Airflow plugin: registers ``BusinessDayTimetable`` (Airflow deserializes a
custom timetable only through a plugin). Found through the ``airflow.plugins`` entry point in
pyproject.toml, so every Airflow process of this environment loads it, with no plugins folder."""

from airflow.plugins_manager import AirflowPlugin

from lakehouse.timetable import BusinessDayTimetable


class LakehousePlugin(AirflowPlugin):
    name = "lakehouse"
    timetables = [BusinessDayTimetable]
