#!/usr/bin/env bash
# Known vulnerabilities in the installed environment (pip-audit against the PyPI advisory
# service). Fails on any vulnerability found. A machine that cannot reach the advisory service
# (only a package mirror) gets every package back as "not found": that is said plainly, not
# reported as a clean audit.
set -uo pipefail
VENV=${VENV:-.venv}
report=$(mktemp)
"$VENV/bin/pip-audit" --skip-editable --progress-spinner off --format json --output "$report" \
  2> "$report.err"
status=$?
summary=$("$VENV/bin/python" - "$report" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
deps = data.get("dependencies", [])
audited = [d for d in deps if "skip_reason" not in d]
vulnerable = [d for d in audited if d.get("vulns")]
print(len(deps), len(audited), len(vulnerable))
for d in vulnerable:
    ids = ", ".join(v["id"] for v in d["vulns"])
    print(f"  {d['name']} {d['version']}: {ids}", file=sys.stderr)
PY
)
read -r total audited vulnerable <<< "$summary"
rm -f "$report" "$report.err"
if [ "${audited:-0}" = 0 ]; then
  echo "audit: the advisory service could not be reached from this machine; none of the ${total:-?} packages was audited"
  exit 0
fi
echo "audit: ${audited} of ${total} packages audited, ${vulnerable} with known vulnerabilities"
[ "$vulnerable" = 0 ] && [ "$status" = 0 ]
