"""Helpers shared by the tests and the benchmarks (the benchmarks import from here, never the
reverse). Which test data to use for what:

- `builders.py`, `order_builders.py`: one FHIR resource at a time, for threshold edges and
  single facts (a WBC of exactly 3.0, a draft order at a given dose);
- `scenarios.py`: the clinical scenarios in fixtures/ with their expected and absent cards,
  moved to today's date, for whole-request behaviour;
- `synthetic.py`: seeded patients of realistic size (years of CBCs), for speed and scale;
- `fhir_stub.py`: a real FHIR server process-local on loopback, with a set delay;
- `production_server.py`, `network.py`: the production server in a real process;
- `jwt_clients.py`: CDS clients that sign JWTs; `settings.py`: production-like settings;
- `conformance.py`: the CDS Hooks 2.0 response checks every API test applies.
"""
