#!/usr/bin/env bash
# Installs the Debian packages kvmm needs to build, test and run. Idempotent: when everything is
# installed it only checks (dpkg-query) and exits. Uses sudo when not root; nothing but apt-get.
set -euo pipefail

PKGS=(
	# build
	build-essential cmake pkg-config linux-libc-dev
	# libraries kvmm links against
	libxxhash-dev liblz4-dev libjansson-dev libinih-dev libxml2-dev libseccomp-dev
	# tests and benchmarks
	libcriterion-dev acpica-tools gnuplot-nox python3
	# the test host (scripts/testhost) and peers run side by side in it
	qemu-system-x86 qemu-utils debootstrap busybox-static e2fsprogs xz-utils cpio kmod
)

missing=()
for p in "${PKGS[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
