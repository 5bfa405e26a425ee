#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A small client of strata.images.v1.Images for the integration tests
(grpcio; message classes compiled from proxy/protos at start).

usage: strata-images.py SOCKET pull REF [--plain-http] [--platform P] [--lazy auto|always|never]
       strata-images.py SOCKET list [FILTER...]
       strata-images.py SOCKET get NAME
       strata-images.py SOCKET delete NAME
       strata-images.py SOCKET prune [--dry-run]
Prints JSON (pull: one line per progress message, the last carries "image").
Exit 1 with the daemon's message on stderr when the call fails. With
STRATA_IMAGES_TIME=1 the call's wall time goes to stderr as elapsed_s=S.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "..", "proxy", "protos")
GEN = tempfile.mkdtemp(prefix="strata-images-pb-")
try:
    subprocess.run(["protoc", "-I", PROTO_ROOT, "--python_out=" + GEN,
                    "strata/images/v1/images.proto"], check=True)
    sys.path.insert(0, GEN)
    from strata.images.v1 import images_pb2 as pb  # noqa: E402
    from google.protobuf import empty_pb2  # noqa: E402
    from google.protobuf import json_format  # noqa: E402
finally:
    shutil.rmtree(GEN, ignore_errors=True)

SVC = "/strata.images.v1.Images/"


def to_json(msg):
    return json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                                including_default_value_fields=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pull")
    p.add_argument("ref")
    p.add_argument("--plain-http", action="store_true")
    p.add_argument("--platform", default="")
    p.add_argument("--lazy", default="auto", choices=["auto", "always", "never"])
    p = sub.add_parser("list")
    p.add_argument("filters", nargs="*")
    p = sub.add_parser("get")
    p.add_argument("name")
    p = sub.add_parser("delete")
    p.add_argument("name")
    p = sub.add_parser("prune")
    p.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()

    ch = grpc.insecure_channel("unix:" + a.socket,
                               options=[("grpc.max_receive_message_length", 16 << 20)])
    t0 = time.monotonic()
    try:
        if a.cmd == "pull":
            lazy = {"auto": pb.LAZY_AUTO, "always": pb.LAZY_ALWAYS, "never": pb.LAZY_NEVER}
            call = ch.unary_stream(SVC + "Pull", request_serializer=pb.PullRequest.SerializeToString,
                                   response_deserializer=pb.PullProgress.FromString)
            req = pb.PullRequest(ref=a.ref, platform=a.platform, plain_http=a.plain_http,
                                 lazy=lazy[a.lazy])
            for m in call(req):
                print(to_json(m), flush=True)
        elif a.cmd == "list":
            call = ch.unary_unary(SVC + "List", request_serializer=pb.ListImagesRequest.SerializeToString,
                                  response_deserializer=pb.ListImagesResponse.FromString)
            print(to_json(call(pb.ListImagesRequest(filters=a.filters))))
        elif a.cmd == "get":
            call = ch.unary_unary(SVC + "Get", request_serializer=pb.GetImageRequest.SerializeToString,
                                  response_deserializer=pb.GetImageResponse.FromString)
            r = call(pb.GetImageRequest(name=a.name))
            print(json.dumps({"image": json.loads(to_json(r.image)),
                              "manifest": json.loads(r.manifest), "config": json.loads(r.config)}))
        elif a.cmd == "delete":
            call = ch.unary_unary(SVC + "Delete", request_serializer=pb.DeleteImageRequest.SerializeToString,
                                  response_deserializer=empty_pb2.Empty.FromString)
            call(pb.DeleteImageRequest(name=a.name))
        elif a.cmd == "prune":
            call = ch.unary_unary(SVC + "Prune", request_serializer=pb.PruneRequest.SerializeToString,
                                  response_deserializer=pb.PruneResponse.FromString)
            print(to_json(call(pb.PruneRequest(dry_run=a.dry_run))))
    except grpc.RpcError as e:
        print("%s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    if os.environ.get("STRATA_IMAGES_TIME"):
        print("elapsed_s=%.3f" % (time.monotonic() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
