#!/bin/sh
# Build dist/guardmail-report.xpi from extension/ (files at the zip root, as Thunderbird wants).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/dist"
out="$here/dist/guardmail-report.xpi"
rm -f "$out"
cd "$here/extension"
zip -q -r -X "$out" manifest.json background.js icons
echo "$out"
