"""`textxfer submit` and `schedule` against a loopback server that checks requests with kfp-server-api models."""

import logging
import pathlib

import pytest

from pipeline import cli, kfp_client
from pipeline.config import load_config
from kfp_fake_server import FakeKfpServer, FakeKfpState, InvalidRequest, build_model

REPO = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "secret-token-4f1c9a"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    """A small compiled KFP pipeline with a float and an int runtime parameter."""
    from kfp import compiler, dsl

    @dsl.container_component
    def train(learning_rate: float, train_steps: int):
        return dsl.ContainerSpec(image="busybox", command=["echo"], args=[str(learning_rate), str(train_steps)])

    @dsl.pipeline(name="sst2")
    def sst2(learning_rate: float = 5e-5, train_steps: int = 750):
        train(learning_rate=learning_rate, train_steps=train_steps)

    path = str(tmp_path_factory.mktemp("package") / "sst2.yaml")
    compiler.Compiler().compile(sst2, path)
    return path


@pytest.fixture
def config():
    return load_config(str(REPO / "configs" / "sst2.yaml"))


def _client(config, server, token=TOKEN):
    return kfp_client.connect(config.kubeflow, host=server.url, environ={config.kubeflow.token_env: token})


def test_submit_uploads_pipeline_and_starts_run(config, package, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with FakeKfpServer() as server:
        parameters = kfp_client.parse_parameters(package, ["learning_rate=3e-5"])
        result = kfp_client.submit_run(config, package, client=_client(config, server), parameters=parameters)

    assert server.errors == []
    assert server.calls() == [
        "GET /apis/v2beta1/healthz",
        "GET /apis/v2beta1/pipelines",
        "POST /apis/v2beta1/pipelines/upload",
        "GET /apis/v2beta1/pipelines/pipeline-1/versions",
        "GET /apis/v2beta1/experiments",
        "POST /apis/v2beta1/experiments",
        "POST /apis/v2beta1/runs",
    ]
    upload = server.requests[2]
    assert upload.query["name"] == "sst2"
    assert upload.body == pathlib.Path(package).read_text()
    assert server.requests[5].body == {"display_name": "sst2", "namespace": ""}
    run = server.requests[6].body
    assert run == {
        "display_name": "sst2",
        "experiment_id": "experiment-3",
        "pipeline_version_reference": {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-2"},
        "runtime_config": {"parameters": {"learning_rate": 3e-5}},
    }
    assert result == kfp_client.SubmitResult("pipeline-1", "version-2", "experiment-3", run_id="run-4")
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
    output = capsys.readouterr()
    assert TOKEN not in caplog.text
    assert TOKEN not in output.out + output.err


def test_schedule_creates_recurring_run(config, package, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    state = FakeKfpState(
        pipelines={"sst2": "pipeline-7"},
        versions={"pipeline-7": [("version-8", "sst2")]},
        experiments={"sst2": "experiment-9"},
    )
    with FakeKfpServer(state) as server:
        result = kfp_client.schedule_run(config, package, "0 3 * * *", client=_client(config, server))

    assert server.errors == []
    assert server.calls() == [
        "GET /apis/v2beta1/healthz",
        "GET /apis/v2beta1/pipelines",
        "GET /apis/v2beta1/pipelines/pipeline-7/versions",
        "POST /apis/v2beta1/pipelines/upload_version",
        "GET /apis/v2beta1/experiments",
        "POST /apis/v2beta1/recurringruns",
    ]
    version_name = server.requests[3].query["name"]
    assert version_name.startswith("sst2-")
    assert server.requests[3].query["pipelineid"] == "pipeline-7"
    recurring = server.requests[5].body
    assert recurring == {
        "display_name": "sst2-scheduled",
        "experiment_id": "experiment-9",
        "max_concurrency": 1,
        "mode": "ENABLE",
        "no_catchup": True,
        "pipeline_version_reference": {"pipeline_id": "pipeline-7", "pipeline_version_id": "version-1"},
        "runtime_config": {"parameters": {}},
        "trigger": {"cron_schedule": {"cron": "0 0 3 * * *"}},
    }
    assert result.recurring_run_id == "recurring-run-2"
    output = capsys.readouterr()
    assert TOKEN not in caplog.text
    assert TOKEN not in output.out + output.err


def test_schedule_max_concurrency_override(config, package):
    with FakeKfpServer() as server:
        client = _client(config, server)
        kfp_client.schedule_run(config, package, "0 3 * * *", client=client, max_concurrency=2)
        kfp_client.schedule_run(config, package, "0 3 * * *", client=client)

    assert server.errors == []
    recurring_bodies = [request.body for request in server.requests if request.path.endswith("/recurringruns")]
    assert recurring_bodies[0]["max_concurrency"] == 2
    assert recurring_bodies[1]["max_concurrency"] == 1


def test_schedule_unchanged_file_reuses_version(config, package):
    with FakeKfpServer() as server:
        client = _client(config, server)
        kfp_client.schedule_run(config, package, "0 3 * * *", client=client)
        second = kfp_client.schedule_run(config, package, "0 3 * * *", client=client)
        third = kfp_client.schedule_run(config, package, "0 4 * * *", client=client)

    assert server.errors == []
    uploads = [call for call in server.calls() if "/upload" in call]
    # The first call creates the pipeline; the second adds the content-named version once.
    assert uploads == ["POST /apis/v2beta1/pipelines/upload", "POST /apis/v2beta1/pipelines/upload_version"]
    assert second.version_id == third.version_id


def test_schedule_rejects_zero_concurrency(config, package):
    with pytest.raises(ValueError, match="max_concurrency 0 must be >= 1"):
        kfp_client.schedule_run(config, package, "0 3 * * *", client=object(), max_concurrency=0)


def test_missing_token_sends_no_authorization(config, package):
    with FakeKfpServer() as server:
        client = kfp_client.connect(config.kubeflow, host=server.url, environ={})
        kfp_client.submit_run(config, package, client=client)

    assert server.errors == []
    assert all("authorization" not in request.headers for request in server.requests)


def test_missing_package_names_compile_command(config, tmp_path):
    with pytest.raises(FileNotFoundError, match="textxfer compile --config"):
        kfp_client.submit_run(config, str(tmp_path / "absent.yaml"), client=object())


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("30 0 3 * * 1-5", "30 0 3 * * 1-5"),
        ("  0  3 * *   * ", "0 0 3 * * *"),
        ("@daily", "@daily"),
        ("@every 6h", "@every 6h"),
    ],
)
def test_normalize_cron(expression, expected):
    assert kfp_client.normalize_cron(expression) == expected


@pytest.mark.parametrize("expression", ["", "* * *", "0 0 0 3 * * *"])
def test_normalize_cron_rejects_field_count(expression):
    with pytest.raises(ValueError, match="invalid cron expression"):
        kfp_client.normalize_cron(expression)


def test_parse_parameters_converts_types(package):
    parameters = kfp_client.parse_parameters(package, ["learning_rate=1e-4", "train_steps=300"])
    assert parameters == {"learning_rate": 1e-4, "train_steps": 300}
    assert isinstance(parameters["train_steps"], int)


def test_parse_parameters_rejects_unknown(package):
    with pytest.raises(ValueError, match="no runtime parameter 'epochs'; it declares learning_rate, train_steps"):
        kfp_client.parse_parameters(package, ["epochs=3"])
    with pytest.raises(ValueError, match="not a valid NUMBER_INTEGER"):
        kfp_client.parse_parameters(package, ["train_steps=many"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        kfp_client.parse_parameters(package, ["train_steps"])


def test_fake_server_rejects_invalid_bodies():
    with pytest.raises(InvalidRequest, match="has no field 'cron_expression'"):
        build_model("V2beta1Trigger", {"cron_schedule": {"cron_expression": "0 0 3 * * *"}})
    with pytest.raises(InvalidRequest, match="'ON' is not one of"):
        build_model("V2beta1RecurringRun", {"mode": "ON"})
    with pytest.raises(InvalidRequest, match="expected bool"):
        build_model("V2beta1RecurringRun", {"no_catchup": "yes"})


def test_cli_schedule_reads_token_from_environment(package, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KFP_API_TOKEN", TOKEN)
    with FakeKfpServer() as server:
        exit_code = cli.main([
            "schedule", "--config", str(REPO / "configs" / "sst2.yaml"), "--package", package,
            "--host", server.url, "--cron", "0 3 * * *", "--param", "train_steps=300",
        ])

    assert exit_code == 0
    assert server.errors == []
    assert all(request.headers["authorization"] == f"Bearer {TOKEN}" for request in server.requests)
    recurring = server.requests[-1].body
    assert recurring["runtime_config"] == {"parameters": {"train_steps": 300}}
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    output = capsys.readouterr()
    assert "recurring run recurring-run-" in output.out
    assert TOKEN not in output.out + output.err
    assert TOKEN not in caplog.text


def test_cli_submit_rejects_unknown_parameter(package, capsys):
    exit_code = cli.main([
        "submit", "--config", str(REPO / "configs" / "sst2.yaml"), "--package", package,
        "--host", "http://127.0.0.1:9", "--param", "epochs=3",
    ])
    assert exit_code == 2
    assert "no runtime parameter 'epochs'" in capsys.readouterr().err
