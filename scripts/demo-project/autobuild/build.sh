#!/bin/sh
# Build script of the demo project: compiles with make (incrementally: object files left by
# the last green build are in the workspace snapshot), runs the binary, and packs it as the
# artifact named in the build definition.
set -eu
echo "building ${AUTOBUILDER_REPOSITORY} ${AUTOBUILDER_REF} at ${AUTOBUILDER_SHA}"
make
./hello
mkdir -p "${AUTOBUILDER_ARCHIVES}"
tar -czf "${AUTOBUILDER_ARCHIVES}/${AUTOBUILDER_ARTIFACT}" hello
echo "packed ${AUTOBUILDER_ARTIFACT}"
