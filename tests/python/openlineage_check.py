"""Checks OpenLineage events (one JSON object a line, in the file given) against the RunEvent
schema of the spec that openlineage-python pins, with format checking (uuid, date-time, uri),
and prints a summary as JSON: for each job, its event types in order, and its outputs.

OpenLineage.json next to this script is the OpenLineage spec 2-0-2 (Apache-2.0,
github.com/OpenLineage/OpenLineage, spec/OpenLineage.json): the package ships classes
generated from it, not the file; the script checks that the package points to this version.
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator, FormatChecker
from openlineage.client.event_v2 import RunEvent

schema = json.loads((pathlib.Path(__file__).parent / "OpenLineage.json").read_text())
pinned = RunEvent._get_schema()
assert pinned.startswith(schema["$id"]), f"the package pins {pinned}, the file is {schema['$id']}"
run_event = {k: v for k, v in schema.items() if k != "oneOf"} | {"$ref": "#/$defs/RunEvent"}
validator = Draft202012Validator(run_event, format_checker=FormatChecker())
# Formats must really be checked (jsonschema skips those whose checker is missing).
for fmt in ("uuid", "date-time", "uri"):
    assert fmt in validator.format_checker.checkers, f"no {fmt} checker: install rfc3339-validator and rfc3986-validator"

jobs = {}
errors = []
for n, line in enumerate(pathlib.Path(sys.argv[1]).read_text().splitlines(), 1):
    event = json.loads(line)
    for e in validator.iter_errors(event):
        errors.append(f"line {n}: {e.message} at {list(e.absolute_path)}")
    assert event["schemaURL"] == pinned, event["schemaURL"]
    job = jobs.setdefault(event["job"]["name"], {"events": [], "runs": {}, "outputs": []})
    job["events"].append(event["eventType"])
    job["runs"].setdefault(event["run"]["runId"], []).append(event["eventType"])
    job["outputs"] += [o["name"] for o in event.get("outputs", [])]
print(json.dumps({"errors": errors, "jobs": jobs}))
