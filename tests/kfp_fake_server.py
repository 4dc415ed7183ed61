"""A loopback HTTP server with the few KFP v2beta1 REST endpoints that `pipeline.kfp_client` uses.

Every JSON request body is rebuilt as the `kfp_server_api` model of its endpoint (unknown keys,
wrong types and invalid enum values are rejected), and every uploaded file must parse as a
KFP `PipelineSpec`. Rejected requests get HTTP 400 and are kept in `errors`, so a test sees them
even when the client swallows the error.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.parser
import email.policy
import http.server
import itertools
import json
import threading
import urllib.parse
from typing import Any, Optional

import kfp_server_api
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool}
# Request models of the JSON endpoints, by (method, path).
_BODY_MODELS = {
    ("POST", "/apis/v2beta1/experiments"): "V2beta1Experiment",
    ("POST", "/apis/v2beta1/runs"): "V2beta1Run",
    ("POST", "/apis/v2beta1/recurringruns"): "V2beta1RecurringRun",
}


class InvalidRequest(ValueError):
    """A request body that does not match the KFP API model of its endpoint."""


def build_model(type_name: str, data: Any, where: str = "body"):
    """Rebuild `data` (parsed JSON) as the kfp_server_api model `type_name`; raise InvalidRequest."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise InvalidRequest(f"{where}: expected a list, got {data!r}")
        return [build_model(type_name[5:-1], item, f"{where}[{index}]") for index, item in enumerate(data)]
    if type_name.startswith("dict("):
        value_type = type_name[type_name.index(",") + 1 : -1].strip()
        if not isinstance(data, dict):
            raise InvalidRequest(f"{where}: expected a mapping, got {data!r}")
        return {key: build_model(value_type, value, f"{where}.{key}") for key, value in data.items()}
    if type_name == "object":
        return data
    if type_name == "datetime":
        return datetime.datetime.fromisoformat(data.replace("Z", "+00:00"))
    if type_name in _SCALARS:
        # The API's int64 fields are typed `str`; grpc-gateway accepts a JSON number for them too.
        allowed = (str, int) if type_name == "str" else _SCALARS[type_name]
        if isinstance(data, bool) and type_name != "bool" or not isinstance(data, allowed):
            raise InvalidRequest(f"{where}: expected {type_name}, got {data!r}")
        return data
    model = getattr(kfp_server_api.models, type_name)
    if not model.attribute_map:
        # An enum model: the JSON value is one of its allowable strings.
        if data not in model.allowable_values:
            raise InvalidRequest(f"{where}: {data!r} is not one of {model.allowable_values}")
        return data
    if not isinstance(data, dict):
        raise InvalidRequest(f"{where}: expected a {type_name} object, got {data!r}")
    attributes = {json_key: attribute for attribute, json_key in model.attribute_map.items()}
    unknown = sorted(set(data) - set(attributes))
    if unknown:
        raise InvalidRequest(f"{where}: {type_name} has no field {unknown[0]!r}")
    kwargs = {
        attributes[key]: build_model(model.openapi_types[attributes[key]], value, f"{where}.{key}")
        for key, value in data.items()
    }
    try:
        return model(**kwargs)
    except ValueError as error:
        raise InvalidRequest(f"{where}: {error}") from None


@dataclasses.dataclass
class RecordedRequest:
    """One request as the server received it: header names lower-cased, `body` as parsed JSON or the uploaded file's text."""

    method: str
    path: str
    query: dict
    headers: dict
    body: Any = None


@dataclasses.dataclass
class FakeKfpState:
    """What the fake cluster contains; tests may pre-populate it."""

    pipelines: dict = dataclasses.field(default_factory=dict)  # display name -> pipeline id
    versions: dict = dataclasses.field(default_factory=dict)  # pipeline id -> [(version id, name)]
    experiments: dict = dataclasses.field(default_factory=dict)  # display name -> experiment id


class FakeKfpServer:
    """Serve the fake KFP API on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, state: Optional[FakeKfpState] = None):
        self.state = state or FakeKfpState()
        self.requests: list = []
        self.errors: list = []
        self._ids = itertools.count(1)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeKfpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def calls(self) -> list:
        """Return "METHOD path" of every request, in order."""
        return [f"{request.method} {request.path}" for request in self.requests]

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def respond(self, request: RecordedRequest) -> tuple:
        """Return (status, JSON body) for `request`, updating the state."""
        state = self.state
        route = (request.method, request.path)
        if route == ("GET", "/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        if route == ("GET", "/apis/v2beta1/pipelines"):
            name = _filtered_name(request.query)
            pipelines = [{"pipeline_id": state.pipelines[name], "display_name": name}] if name in state.pipelines else []
            return 200, {"pipelines": pipelines, "total_size": len(pipelines)}
        if route == ("POST", "/apis/v2beta1/pipelines/upload"):
            name = request.query["name"]
            pipeline_id = state.pipelines[name] = self.new_id("pipeline")
            state.versions[pipeline_id] = [(self.new_id("version"), name)]
            return 200, {"pipeline_id": pipeline_id, "display_name": name}
        if route == ("POST", "/apis/v2beta1/pipelines/upload_version"):
            pipeline_id = request.query["pipelineid"]
            version_id = self.new_id("version")
            state.versions[pipeline_id].append((version_id, request.query["name"]))
            return 200, {"pipeline_id": pipeline_id, "pipeline_version_id": version_id, "display_name": request.query["name"]}
        if request.method == "GET" and request.path.startswith("/apis/v2beta1/pipelines/") and request.path.endswith("/versions"):
            pipeline_id = request.path.split("/")[4]
            name = _filtered_name(request.query)
            versions = [
                {"pipeline_id": pipeline_id, "pipeline_version_id": version_id, "display_name": version_name}
                for version_id, version_name in reversed(state.versions.get(pipeline_id, []))
                if name is None or version_name == name
            ]
            return 200, {"pipeline_versions": versions[: int(request.query.get("page_size", 10))]}
        if route == ("GET", "/apis/v2beta1/experiments"):
            name = _filtered_name(request.query)
            found = [{"experiment_id": state.experiments[name], "display_name": name}] if name in state.experiments else []
            return 200, {"experiments": found, "total_size": len(found)}
        if route == ("POST", "/apis/v2beta1/experiments"):
            name = request.body["display_name"]
            state.experiments[name] = self.new_id("experiment")
            return 200, dict(request.body, experiment_id=state.experiments[name])
        if route == ("POST", "/apis/v2beta1/runs"):
            return 200, dict(request.body, run_id=self.new_id("run"))
        if route == ("POST", "/apis/v2beta1/recurringruns"):
            return 200, dict(request.body, recurring_run_id=self.new_id("recurring-run"))
        return 404, {"error": f"no route {request.method} {request.path}"}


def _filtered_name(query: dict) -> Optional[str]:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"])["predicates"]
    return next(predicate["stringValue"] for predicate in predicates if predicate["key"] == "display_name")


def _parse_upload(headers, raw: bytes) -> str:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode("ascii") + raw
    )
    files = [part for part in message.iter_parts() if part.get_param("name", header="content-disposition") == "uploadfile"]
    if len(files) != 1:
        raise InvalidRequest("multipart body has no uploadfile part")
    text = files[0].get_payload(decode=True).decode("utf-8")
    documents = list(yaml.safe_load_all(text))
    try:
        json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
        for platform_document in documents[1:]:
            json_format.ParseDict(platform_document, pipeline_spec_pb2.PlatformSpec())
    except json_format.ParseError as error:
        raise InvalidRequest(f"uploaded file is not a KFP pipeline spec: {error}") from None
    return text


def _handler_class(server: FakeKfpServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 (the base class names it so)
            pass

        def _handle(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = RecordedRequest(self.command, url.path, query, headers)
            server.requests.append(request)
            try:
                if url.path.endswith(("/upload", "/upload_version")):
                    request.body = _parse_upload(self.headers, raw)
                elif raw:
                    request.body = json.loads(raw)
                    model = _BODY_MODELS.get((self.command, url.path))
                    if model is None:
                        raise InvalidRequest(f"unexpected body for {self.command} {url.path}")
                    build_model(model, request.body)
                status, payload = server.respond(request)
            except (InvalidRequest, KeyError, ValueError) as error:
                server.errors.append(f"{self.command} {url.path}: {error}")
                status, payload = 400, {"error": str(error)}
            if status == 404:
                server.errors.append(payload["error"])
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

    return Handler
