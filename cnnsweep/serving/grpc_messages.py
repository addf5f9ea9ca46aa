"""The protobuf messages of the KServe/Triton gRPC service (`inference.GRPCInferenceService`), from
tritonclient[grpc], made picklable.

tritonclient's generated classes name their module `grpc_service_pb2` (the .proto file's name), which
is not importable, so pickle cannot find them; Ray Serve's gRPC proxy pickles each request to send it
to a replica. Importing this module registers that name for tritonclient's module (in the proxy
through `cnnsweep.distributed.serve.proxy_setup`, in the replica in its constructor).
"""

from __future__ import annotations

import sys

from tritonclient.grpc import service_pb2 as pb

PROTO_MODULE = pb.ModelInferRequest.__module__  # "grpc_service_pb2"
sys.modules.setdefault(PROTO_MODULE, pb)

__all__ = ["pb"]
