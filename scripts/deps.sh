#!/usr/bin/env bash
# Finds or installs the system components RecSys-Lite and its tests use (Debian packages).
# As root it installs them with apt-get, otherwise through sudo if that works without a
# password; where neither can (no root, no network), it says what is missing and how to get it,
# and the tests that need a component are skipped with that reason.
set -u
# command to look for : Debian package : what uses it
COMPONENTS=(
  "redis-server:redis-server:the Redis event bus and its tests"
  "chromium:chromium:the widget's browser tests"
  "npm:npm:the widget's build, the /demo shop and the widget's tests"
  "prometheus:prometheus:the tests of the Prometheus config, alert rules and dashboard"
  "java:openjdk-17-jre-headless:Spark training (train --engine spark) and its tests"
  "cc:gcc:the compiled explanation kernel (without it explanations take the slower numpy path)"
)
# the widget's build (Vite 7) needs Node 20.19 or newer; Debian 12's own nodejs is 18
if command -v node >/dev/null 2>&1 && ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "deps: node $(node -v) is too old for the widget's build: install Node 20.19 or newer (https://nodejs.org)"
fi
missing=()
for entry in "${COMPONENTS[@]}"; do
  IFS=: read -r command package purpose <<<"$entry"
  if command -v "$command" >/dev/null 2>&1; then
    echo "deps: $command found ($purpose)"
  else
    missing+=("$package:$purpose")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=()
for entry in "${missing[@]}"; do packages+=("${entry%%:*}"); done
if [ "$(id -u)" -eq 0 ]; then
  runner=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  runner=(sudo)
else
  runner=none
fi
if [ "${runner[*]-}" != none ] && command -v apt-get >/dev/null 2>&1; then
  for entry in "${missing[@]}"; do
    echo "deps: installing ${entry%%:*} (for ${entry#*:}) with apt-get, about a minute"
  done
  if "${runner[@]}" apt-get update -qq && \
     DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null; then
    exit 0
  fi
  echo "deps: apt-get could not install ${packages[*]} (no network?)"
fi
for entry in "${missing[@]}"; do
  echo "deps: MISSING ${entry%%:*} (for ${entry#*:}): run 'sudo apt-get install ${entry%%:*}';" \
       "until then the tests that need it are skipped"
done
exit 0
