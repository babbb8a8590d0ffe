"""``--health-port``: gRPC health alone, in plaintext, beside a TLS server (Kubernetes' grpc probes speak no TLS):
it answers the same statuses as the TLS port and serves no Predict, so no unauthenticated plaintext scoring."""

from __future__ import annotations

import grpc
import pytest


def test_plaintext_health_port_beside_tls(pipeline_zips, tls_files):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from onda.host.service import ServerConfig, ServerThread
    from onda.host.service.contract import contract

    cert, key = tls_files
    with ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, tls_cert=cert, tls_key=key,
                                   keys=["k"], health_port=0)) as server:
        port = server.server.health_port
        assert port and port != server.port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in ("", "tensorflow.serving.PredictionService", "tiny"):
                r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as e:
                stub.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            c = contract()
            predict = ch.unary_unary(c.predict_path, request_serializer=c.PredictRequest.SerializeToString,
                                     response_deserializer=c.PredictResponse.FromString)
            with pytest.raises(grpc.RpcError) as e:
                predict(c.PredictRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:  # the main port stays TLS only
            with pytest.raises(grpc.RpcError) as e:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
