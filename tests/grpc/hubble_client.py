"""A Hubble gRPC client built from the vendored protos by another toolchain (protoc and
grpcio's Python plugin), as Hubble's users build theirs: the tests run it against flowscope.

    hubble_client.py ADDRESS flows REQUEST_JSON [MAX]   GetFlows; one JSON line per response,
                                                      at most MAX (then it cancels)
    hubble_client.py ADDRESS status|nodes|namespaces  the unary calls, one JSON line
    hubble_client.py ADDRESS agent-events|debug-events
    hubble_client.py ADDRESS peers MAX                Peer.Notify, at most MAX notifications

With HUBBLE_TLS_CA set, the channel is TLS: the server's certificate must be signed by that
CA (HUBBLE_TLS_SERVER_NAME: the name it must carry), and HUBBLE_TLS_CERT/HUBBLE_TLS_KEY are the
client's certificate for mutual TLS.

Messages are printed with protobuf's own JSON mapping and the protos' field names, as
`hubble observe -o json` prints them. A failed call prints {"error": {"code", "details"}} and
exits with 3. PYTHONPATH must hold the generated modules.
"""

import json
import os
import sys

import grpc
from google.protobuf import json_format

from observer import observer_pb2, observer_pb2_grpc
from peer import peer_pb2, peer_pb2_grpc


def show(message):
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None),
          flush=True)


def read(name):
    path = os.environ.get(name)
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def open_channel(address):
    ca = read("HUBBLE_TLS_CA")
    if ca is None:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=read("HUBBLE_TLS_KEY"),
        certificate_chain=read("HUBBLE_TLS_CERT"))
    options = []
    name = os.environ.get("HUBBLE_TLS_SERVER_NAME")
    if name:
        options.append(("grpc.ssl_target_name_override", name))
    return grpc.secure_channel(address, credentials, options)


def main():
    address, command = sys.argv[1], sys.argv[2]
    channel = open_channel(address)
    observer = observer_pb2_grpc.ObserverStub(channel)
    try:
        if command == "flows":
            fields = json.loads(sys.argv[3])
            # A mask's paths are set as the hubble CLI sets them (protojson's camelCase form
            # cannot spell a path through `UDP`).
            mask = fields.pop("field_mask", None)
            request = json_format.Parse(json.dumps(fields), observer_pb2.GetFlowsRequest())
            if mask is not None:
                request.field_mask.paths.extend(mask.split(","))
            limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
            stream = observer.GetFlows(request, timeout=30)
            for n, response in enumerate(stream, 1):
                show(response)
                if limit is not None and n >= limit:
                    stream.cancel()
                    break
        elif command == "status":
            show(observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10))
        elif command == "nodes":
            show(observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=10))
        elif command == "namespaces":
            show(observer.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=10))
        elif command == "agent-events":
            for response in observer.GetAgentEvents(observer_pb2.GetAgentEventsRequest(),
                                                    timeout=10):
                show(response)
        elif command == "debug-events":
            for response in observer.GetDebugEvents(observer_pb2.GetDebugEventsRequest(),
                                                    timeout=10):
                show(response)
        elif command == "peers":
            limit = int(sys.argv[3])
            stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=30)
            for n, change in enumerate(stream, 1):
                show(change)
                if n >= limit:
                    stream.cancel()
                    break
        else:
            sys.exit("unknown command " + command)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.CANCELLED:
            return
        print(json.dumps({"error": {"code": e.code().name, "details": e.details()}}), flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
