#!/bin/bash
# Installs every Debian 12 package Strata needs to build, test and run.
# Idempotent: safe to re-run; runs `apt-get update` once per invocation.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (apt-get needs it)" >&2
	exit 1
fi

build_pkgs=(
	build-essential meson ninja-build pkg-config git ca-certificates
	libfuse3-dev libarchive-dev libcurl4-openssl-dev libssl-dev liblmdb-dev
	libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libjansson-dev
	zlib1g-dev libdeflate-dev libyajl-dev libzstd-dev libsystemd-dev libcmocka-dev
)
run_pkgs=(
	fuse3 lmdb-utils containerd runc containernetworking-plugins iptables
	iproute2 procps util-linux kmod
)
test_pkgs=(
	bats docker-registry skopeo umoci busybox-static stargz-snapshotter
	clang-format curl jq openssl python3 e2fsprogs
	python3-grpcio python3-protobuf python3-h2 protobuf-compiler valgrind
	apache2-utils attr libcap2-bin hyperfine bc
)

missing=()
for p in "${build_pkgs[@]}" "${run_pkgs[@]}" "${test_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: all packages already installed"
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps package postinst scripts from starting system daemons
# (containerd, docker-registry) that would hold the default ports and sockets.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ "$had_policy" -eq 0 ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
fi
trap '[ "$had_policy" -eq 0 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
