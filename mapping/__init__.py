"""Mapping: FHIR / HL7 v2 in -> administration events; coding results -> FHIR ChargeItems.

In: ``fhir_in`` (table ``FIELD_PATHS``), ``fhir_bundle``, ``fhir_shapes`` (validation by shape),
``hl7_in`` (table ``HL7_FIELDS``), ``hl7_er7`` (the lean reader), ``hl7_reference`` (hl7apy, for
the differential test), ``vocabulary``, ``medications``, ``collector`` (duplicates and versions).
Out: ``chargeitem_out`` (the ChargeItem profile), ``chargemaster``, ``references_out``,
``explain_out``; ``errors`` (MappingError, messages without values).  Reference data: ``reference_data``, ``crosswalk``, ``formulary_import``,
``worklist``.
"""
