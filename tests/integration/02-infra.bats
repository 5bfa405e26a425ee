#!/usr/bin/env bats
# The real parts every later test stands on: a private registry, a private
# containerd, and the test image builder. If these fail, nothing else can.

load helpers

setup() { common_setup; }
teardown() { common_teardown; }

@test "a private docker-registry on 127.0.0.1 accepts a pushed busybox image" {
	start_registry
	build_busybox_image "$TEST_TMP/oci" latest
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	run curl -fs "http://$REGISTRY/v2/_catalog"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q '"test/busybox"'
	run curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/test/busybox/manifests/latest"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q 'application/vnd.oci.image.layer.v1.tar+gzip'
}

@test "a private containerd pulls from the private registry and runs busybox" {
	start_registry
	build_busybox_image "$TEST_TMP/oci" latest
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	start_containerd
	run ctr_ images pull --plain-http "$REGISTRY/test/busybox:latest"
	echo "$output"
	[ "$status" -eq 0 ]
	run ctr_ run --rm "$REGISTRY/test/busybox:latest" it-$$ /bin/cat /etc/motd
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from strata" ]
}
