"""Mapping: FHIR / HL7 v2 in -> administration events; coding results -> FHIR ChargeItems."""
