"""gRPC requests to TF Serving, built from the REST example bodies in `requests/` (needs
`tensorflow-serving-api`, which brings TensorFlow and grpcio).

  python grpc_request.py --server localhost:8500 --model ssinfogan requests/sample.json

A REST body (row format `{"instances": [...]}` or columnar `{"inputs": {...}}`) becomes a `PredictRequest`
whose inputs are `TensorProto`s (`tf.make_tensor_proto`) of the dtypes the server reports for the signature
(GetModelMetadata); the reply's outputs are printed as shapes.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tensorflow as tf

_DEFAULT_DTYPES = {np.dtype(bool): tf.bool, np.dtype(np.int64): tf.int32, np.dtype(np.float64): tf.float32}


def columnar(body: dict) -> dict:
    """The inputs of a REST body as {name: nested list}; row format ('instances') is stacked per name."""
    if "inputs" in body:
        return body["inputs"]
    rows = body["instances"]
    return {k: [row[k] for row in rows] for k in rows[0]}


def build_predict_request(body: dict, model_name: str = "ssinfogan", dtypes: dict = None):
    """A `PredictRequest` for the REST body `body`. `dtypes` ({name: tf.DType}) overrides the inferred
    types (JSON ints -> int32, floats -> float32, booleans -> bool, strings -> string)."""
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = body.get("signature_name", "serving_default")
    for name, value in columnar(body).items():
        arr = np.asarray(value)
        dtype = (dtypes or {}).get(name) or (tf.string if arr.dtype.kind in "US" else _DEFAULT_DTYPES[arr.dtype])
        req.inputs[name].CopyFrom(tf.make_tensor_proto(arr if dtype != tf.string else arr.astype(bytes), dtype=dtype))
    return req


def signature_dtypes(stub, model_name: str, signature: str, timeout: float = 30.0) -> dict:
    """{input name: tf.DType} of a served signature, from the server's GetModelMetadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = model_name
    req.metadata_field.append("signature_def")
    reply = stub.GetModelMetadata(req, timeout)
    defs = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(defs)
    return {k: tf.dtypes.as_dtype(v.dtype) for k, v in defs.signature_def[signature].inputs.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description="Send a REST example body as a gRPC Predict request.")
    p.add_argument("body", help="a JSON file from requests/")
    p.add_argument("--server", default="localhost:8500")
    p.add_argument("--model", default="ssinfogan")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args(argv)
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with open(a.body) as f:
        body = json.load(f)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(a.server))
    dtypes = signature_dtypes(stub, a.model, body.get("signature_name", "serving_default"), a.timeout)
    req = build_predict_request(body, a.model, dtypes)
    reply = stub.Predict(req, a.timeout)
    for name, proto in reply.outputs.items():
        arr = tf.make_ndarray(proto)
        print(name, arr.dtype, arr.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
