"""One unary gRPC call with the reference implementation (grpcio), as any gRPC client makes it:
python grpc_call.py HOST:PORT /package.Service/Method [MESSAGE]. Prints `OK <message>` or
`<STATUS_CODE> <details>`; exits 0 either way, 2 on bad usage."""
import sys

import grpc


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    target, method = sys.argv[1], sys.argv[2]
    message = (sys.argv[3] if len(sys.argv) > 3 else "hello").encode()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            reply = call(message, timeout=5)
            print("OK", reply.decode(errors="replace"))
        except grpc.RpcError as e:
            print(e.code().name, e.details())


if __name__ == "__main__":
    main()
