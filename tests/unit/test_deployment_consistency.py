"""The deployment's pieces agree with each other: template.yaml, the handlers, the emulator, the Dockerfile,
package-lock.json, pyproject.toml and constraints.txt. Nothing here can reach AWS or Docker, so the
deployment has to be right by construction; these tests hold it there.

template.yaml also goes through the real SAM transform (aws-sam-translator), as CloudFormation would
run it, and the tests read the CloudFormation it produces.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.server import Emulator
from clinvk_core.emulator.template import Function, Route, functions, load_template

from .conftest import HANDLER_MODULES, Handlers

TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
PINNED_IMAGE = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
LWA_IMAGE = "public.ecr.aws/awsguru/aws-lambda-adapter"
LAMBDA_PATH = ("/var/lang/bin", "/usr/local/bin", "/usr/bin", "/bin", "/opt/bin")  # PATH in a Lambda function
API_GATEWAY_BUFFERED_LIMIT_SECONDS = 29  # a buffered REST integration times out after 29 s by default
# The functions that run a CLI.
CLI_MODULES = ("handlers.chat_completions", "handlers.responses", "handlers.anthropic_messages")


# --- reading the files -------------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... AS name section of the Dockerfile, its instructions as (keyword, arguments)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def dockerfile_stages() -> dict[str, Stage]:
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            base, _, name = rest.partition(" AS ")
            current = stages[name.strip()] = Stage(base.strip(), name.strip())
        else:
            assert current is not None, f"{keyword} before FROM"
            current.instructions.append((keyword.upper(), rest.strip()))
    return stages


def dynamodb_calls() -> set[str]:
    """The DynamoDB actions the store calls (``self.client.get_item`` -> ``GetItem``), read from its code."""
    tree = ast.parse((PROJECT_ROOT / "clinvk_core" / "store" / "dynamodb.py").read_text(encoding="utf-8"))
    return {
        node.func.attr.title().replace("_", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "client"
    }


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain[::-1]


def env_of(stages: dict[str, Stage], name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in lineage(stages, name):
        for rest in stage.args("ENV"):
            env |= dict(item.split("=", 1) for item in shlex.split(rest))
    return env


def exec_form(stages: dict[str, Stage], name: str, keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD (exec form) in the stage's lineage."""
    found = [rest for stage in lineage(stages, name) for rest in stage.args(keyword)]
    value: list[str] = json.loads(found[-1])
    return value


def copy_from(rest: str) -> tuple[str | None, list[str], str]:
    """(the --from source, sources, destination) of a COPY."""
    words = shlex.split(rest)
    source = next((word.removeprefix("--from=") for word in words if word.startswith("--from=")), None)
    paths = [word for word in words if not word.startswith("--")]
    return source, paths[:-1], paths[-1]


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return dockerfile_stages()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def template_functions(template: dict[str, Any]) -> list[Function]:
    return functions(template)


@pytest.fixture(scope="module")
def cloudformation(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml through the SAM transform, after `sam build` set each function's ImageUri."""

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    sam = json.loads(json.dumps(template))
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["ImageUri"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/clinvk:built"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        result: dict[str, Any] = transform(sam, {}, NoManagedPolicies())
    return result


def resources_of_type(cloudformation: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cloudformation["Resources"].items() if r["Type"] == kind}


def function_named(template_functions: list[Function], module: str) -> Function:
    [function] = [f for f in template_functions if f.module == module]
    return function


# --- template.yaml, the handlers and the emulator ---------------------------------------------------


def test_every_function_names_a_handler_that_imports_with_handler_and_app(
    handlers: Handlers, template_functions: list[Function]
) -> None:
    assert {f.module for f in template_functions} == set(HANDLER_MODULES)
    for function in template_functions:
        module = importlib.import_module(function.module)
        assert callable(module.handler), function.name  # the Lambda entry (Mangum)
        assert callable(module.app), function.name  # the ASGI app (uvicorn behind the Web Adapter)
        assert getattr(module, function.attribute) is (module.app if function.streaming else module.handler)


def test_the_emulator_serves_exactly_the_template_routes(
    handlers: Handlers, template_functions: list[Function]
) -> None:
    emulator = Emulator(template_functions)
    template_routes = {route for function in template_functions for route in function.routes}
    assert set(emulator.routes) == template_routes
    assert len(emulator.routes) == len(template_routes)  # each route once
    requests = {
        Route("GET", "/openai/v1/models"): ("/openai/v1/models", None, 200),
        Route("GET", "/openai/v1/models/{model+}"): ("/openai/v1/models/codex/gpt-5.5", None, 200),
        Route("GET", "/health"): ("/health", None, 200),
        Route("POST", "/openai/v1/chat/completions"): ("/openai/v1/chat/completions", {"model": "claude"}, 400),
        Route("POST", "/anthropic/v1/messages"): ("/anthropic/v1/messages", {"model": "claude"}, 400),
        Route("POST", "/anthropic/v1/messages/count_tokens"): ("/anthropic/v1/messages/count_tokens", {}, 400),
        Route("GET", "/anthropic/v1/models"): ("/anthropic/v1/models", None, 200),
        Route("GET", "/anthropic/v1/models/{model+}"): ("/anthropic/v1/models/codex/gpt-5.5", None, 200),
        Route("POST", "/openai/v1/responses"): ("/openai/v1/responses", {"model": "claude"}, 400),
        Route("GET", "/openai/v1/responses/{response_id}"): ("/openai/v1/responses/resp_unknown", None, 404),
        Route("DELETE", "/openai/v1/responses/{response_id}"): ("/openai/v1/responses/resp_unknown", None, 404),
        Route("GET", "/openai/v1/responses/{response_id}/input_items"): (
            "/openai/v1/responses/resp_unknown/input_items",
            None,
            404,
        ),
    }
    assert set(requests) == template_routes
    with TestClient(emulator, raise_server_exceptions=False) as client:
        for route, (path, body, status) in requests.items():
            response = client.request(route.method, path, json=body)
            assert response.status_code == status, (route, response.text)


# --- template.yaml through the SAM transform ------------------------------------------------------------


def test_the_rest_api_integrates_each_route_with_its_function(
    cloudformation: dict[str, Any], template_functions: list[Function]
) -> None:
    [api] = resources_of_type(cloudformation, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"]["Types"] == ["REGIONAL"]  # 5-minute stream idle timeout
    paths = api["Properties"]["Body"]["paths"]
    for function in template_functions:
        for route in function.routes:
            integration = paths[route.path][route.method.lower()]["x-amazon-apigateway-integration"]
            uri = integration["uri"]["Fn::Sub"]
            assert integration["type"] == "aws_proxy"
            assert integration["httpMethod"] == "POST"
            assert f"${{{function.name}.Arn}}" in uri
            if function.streaming:
                assert uri.endswith(
                    f"lambda:path/2021-11-15/functions/${{{function.name}.Arn}}/response-streaming-invocations"
                )
                assert integration["responseTransferMode"] == "STREAM"
                assert integration["timeoutInMillis"] == 900_000
            else:
                assert uri.endswith(f"lambda:path/2015-03-31/functions/${{{function.name}.Arn}}/invocations")
                assert integration.get("responseTransferMode", "BUFFERED") == "BUFFERED"
    [stage] = resources_of_type(cloudformation, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "prod"
    [deployment] = resources_of_type(cloudformation, "AWS::ApiGateway::Deployment").values()
    assert "StageName" not in deployment["Properties"]  # no stray "Stage" stage


def test_api_gateway_may_invoke_each_function_on_its_routes_only(
    cloudformation: dict[str, Any], template_functions: list[Function]
) -> None:
    permissions = [
        p["Properties"]
        for p in resources_of_type(cloudformation, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    granted: dict[str, list[str]] = {}
    for permission in permissions:
        assert permission["Action"] == "lambda:InvokeFunction"  # also covers InvokeWithResponseStream
        source = permission["SourceArn"]["Fn::Sub"]
        assert source.startswith("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/")
        granted.setdefault(permission["FunctionName"]["Ref"], []).append(source.split("${Api}/", 1)[1])
    for function in template_functions:
        patterns = granted.pop(function.name)
        for route in function.routes:
            concrete = "prod/" + route.method + re.sub(r"\{[^}]+\}", "x", route.path)
            assert any(fnmatch.fnmatchcase(concrete, pattern) for pattern in patterns), (function.name, route)
        other_routes = [r for f in template_functions if f is not function for r in f.routes]
        for route in other_routes:
            concrete = "prod/" + route.method + re.sub(r"\{[^}]+\}", "x", route.path)
            assert not any(fnmatch.fnmatchcase(concrete, pattern) for pattern in patterns), (function.name, route)
    assert not granted


def test_the_chat_function_streams_through_its_function_url(
    cloudformation: dict[str, Any], template: dict[str, Any], template_functions: list[Function]
) -> None:
    chat = function_named(template_functions, "handlers.chat_completions")
    [url] = resources_of_type(cloudformation, "AWS::Lambda::Url").values()
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": chat.name}
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    public = [
        p["Properties"]
        for p in resources_of_type(cloudformation, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "*"
    ]
    # Function URLs made since October 2025 need both actions granted.
    assert {p["Action"] for p in public} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    outputs = template["Outputs"]
    assert outputs["FunctionUrlBaseUrl"]["Value"] == {"Fn::Sub": f"${{{chat.name}Url.FunctionUrl}}openai/v1"}
    assert outputs["ApiBaseUrl"]["Value"]["Fn::Sub"].endswith("/prod/openai/v1")
    assert outputs["HealthUrl"]["Value"]["Fn::Sub"].endswith("/prod/health")


def test_functions_are_sized_for_what_they_run(cloudformation: dict[str, Any], template: dict[str, Any]) -> None:
    defaults = template["Parameters"]
    lambdas = resources_of_type(cloudformation, "AWS::Lambda::Function")
    for name, function in lambdas.items():
        props = function["Properties"]
        assert props["PackageType"] == "Image"
        assert props["Architectures"] == ["x86_64"]  # what the Dockerfile builds
        log_group = cloudformation["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        assert not log_group["Properties"]["LogGroupName"]["Fn::Sub"].lstrip("/").startswith("aws/")  # reserved
        if any(module in json.dumps(props["ImageConfig"]) for module in CLI_MODULES):
            assert props["Timeout"] == 900
            assert defaults["ChatMemorySize"]["Default"] >= 1024  # a CLI peaks at 150-260 MB, plus Python
            assert props["MemorySize"] == {"Ref": "ChatMemorySize"}
            assert props["EphemeralStorage"]["Size"] == {"Ref": "ChatEphemeralStorage"}
        else:
            assert props["Timeout"] <= API_GATEWAY_BUFFERED_LIMIT_SECONDS, name
            assert props["MemorySize"] >= 256
            assert props["EphemeralStorage"]["Size"] >= 512


def test_each_role_grants_only_its_functions_logs_the_one_secret_and_the_responses_table(
    cloudformation: dict[str, Any],
) -> None:
    roles = resources_of_type(cloudformation, "AWS::IAM::Role")
    assert set(roles) == {"FunctionRole", "ResponsesRole"}
    log_groups = {
        role: {
            f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            for f in resources_of_type(cloudformation, "AWS::Lambda::Function").values()
            if f["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        }
        for role in roles
    }
    assert log_groups["ResponsesRole"] == {"ResponsesLogGroup"}  # only the responses function may use the table
    assert len(log_groups["FunctionRole"]) == 5  # models, health, chat completions, the two Anthropic ones
    for name, role in roles.items():
        props = role["Properties"]
        assert "ManagedPolicyArns" not in props
        statements = props["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in statements] == [{"Service": "lambda.amazonaws.com"}]
        logs, *table, secret = props["Policies"]
        [write] = logs["PolicyDocument"]["Statement"]
        assert write["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
        assert {resource["Fn::GetAtt"][0] for resource in write["Resource"]} == log_groups[name]
        condition, granted, otherwise = secret["Fn::If"]
        assert (condition, otherwise) == ("HasSecret", {"Ref": "AWS::NoValue"})
        [read] = granted["PolicyDocument"]["Statement"]
        assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", {"Ref": "SecretArn"})
        if name == "ResponsesRole":
            [[items]] = [policy["PolicyDocument"]["Statement"] for policy in table]
            assert items["Action"] == [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
            ]
            assert set(items["Action"]) == {f"dynamodb:{call}" for call in dynamodb_calls()}  # no more, no fewer
            assert items["Resource"] == {"Fn::GetAtt": ["ResponsesTable", "Arn"]}
        else:
            assert table == []
    assert cloudformation["Conditions"]["HasSecret"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SecretArn"}, ""]}]}


def test_the_responses_function_finds_its_table(cloudformation: dict[str, Any]) -> None:
    [function] = [
        f["Properties"]
        for f in resources_of_type(cloudformation, "AWS::Lambda::Function").values()
        if "handlers.responses" in json.dumps(f["Properties"]["ImageConfig"])
    ]
    variables = function["Environment"]["Variables"]
    assert variables["CLINVK_RESPONSE_STORE"] == "dynamodb"
    assert variables["CLINVK_RESPONSE_TABLE"] == {"Ref": "ResponsesTable"}
    assert variables["CLINVK_RESPONSE_TTL_DAYS"] == {"Ref": "ResponseTtlDays"}
    table = cloudformation["Resources"]["ResponsesTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_settings_reach_every_function(cloudformation: dict[str, Any]) -> None:
    for function in resources_of_type(cloudformation, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["CLINVK_SECRET_ARN"] == {"Ref": "SecretArn"}
        assert variables["CLINVK_TOOL_MODE"] == {"Ref": "ToolMode"}
        assert variables["CLINVK_TIMEOUT_SECONDS"] == {"Ref": "TimeoutSeconds"}
        assert variables["CLINVK_STATE_DIR"].startswith("/tmp/")
        assert variables["HOME"].startswith(variables["CLINVK_STATE_DIR"])


# --- the Dockerfile ----------------------------------------------------------------------------------


def test_every_image_is_pinned_by_tag_and_digest(stages: dict[str, Stage]) -> None:
    external = [stage.base for stage in stages.values() if stage.base not in stages]
    external += [source for stage in stages.values() for rest in stage.args("COPY") if (source := copy_from(rest)[0])]
    external = [image for image in external if image not in stages]
    assert external
    for image in external:
        assert PINNED_IMAGE.match(image), image


def test_the_base_is_lambdas_python_in_the_projects_version_family(stages: dict[str, Stage]) -> None:
    [base] = [stage.base for stage in stages.values() if stage.base not in stages]
    match = re.match(r"^public\.ecr\.aws/lambda/python:(3\.\d+)@", base)
    assert match, base
    version = match.group(1)
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert version in SpecifierSet(project["requires-python"])
    assert tuple(int(part) for part in version.split(".")) >= (3, 12)


def test_each_function_builds_an_existing_target_and_only_the_streaming_one_has_the_adapter(
    stages: dict[str, Stage], template: dict[str, Any], template_functions: list[Function]
) -> None:
    for function in template_functions:
        target = template["Resources"][function.name]["Metadata"]["DockerBuildTarget"]
        assert target == ("streaming" if function.streaming else "runtime"), function.name
        metadata = template["Resources"][function.name]["Metadata"]
        assert (metadata["Dockerfile"], metadata["DockerContext"]) == ("Dockerfile", ".")
        adapter = [rest for stage in lineage(stages, target) for rest in stage.args("COPY") if LWA_IMAGE in rest]
        assert bool(adapter) == function.streaming, function.name
    [with_adapter] = [stage.name for stage in stages.values() if any(LWA_IMAGE in r for r in stage.args("COPY"))]
    assert with_adapter == "streaming"
    [source, destination] = copy_from(stages["streaming"].args("COPY")[0])[1:]
    assert (source, destination) == (["/lambda-adapter"], "/opt/extensions/lambda-adapter")


def test_the_streaming_target_runs_what_the_template_says(
    stages: dict[str, Stage], template: dict[str, Any], template_functions: list[Function]
) -> None:
    chat = function_named(template_functions, "handlers.chat_completions")
    image_config = template["Resources"][chat.name]["Properties"]["ImageConfig"]
    entrypoint, command = exec_form(stages, "streaming", "ENTRYPOINT"), exec_form(stages, "streaming", "CMD")
    assert (entrypoint, command) == (image_config["EntryPoint"], image_config["Command"])
    env = env_of(stages, "streaming")
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_PORT"] == command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "127.0.0.1"  # the adapter's default host
    readiness = env["AWS_LWA_READINESS_CHECK_PATH"]
    assert Route("GET", readiness) in {route for f in template_functions for route in f.routes}


def test_the_clis_are_installed_with_npm_ci_from_the_lockfile(stages: dict[str, Stage]) -> None:
    [clis] = [stage for stage in stages.values() if any("npm ci" in rest for rest in stage.args("RUN"))]
    [npm] = [rest for rest in clis.args("RUN") if "npm " in rest]
    assert "npm ci" in npm
    assert "--omit" not in npm  # the CLIs' binaries are optional dependencies
    assert "--production" not in npm
    assert "npm install" not in npm
    keywords = [(word, rest) for word, rest in clis.instructions]
    lock_copy = next(i for i, (word, rest) in enumerate(keywords) if word == "COPY" and "package-lock.json" in rest)
    assert copy_from(keywords[lock_copy][1])[1] == ["package.json", "package-lock.json"]
    assert lock_copy < next(i for i, (word, rest) in enumerate(keywords) if word == "RUN" and "npm ci" in rest)


def test_node_is_22_checksummed_and_satisfies_every_locked_engine(stages: dict[str, Stage]) -> None:
    clis = next(stage for stage in stages.values() if any("npm ci" in rest for rest in stage.args("RUN")))
    args = dict(rest.split("=", 1) for rest in clis.args("ARG"))
    version = tuple(int(part) for part in args["NODE_VERSION"].split("."))
    assert version[0] == 22
    assert re.fullmatch(r"[0-9a-f]{64}", args["NODE_SHA256"])
    [download] = [rest for rest in clis.args("RUN") if "nodejs.org/dist" in rest]
    assert "linux-x64.tar.xz" in download
    assert 'echo "${NODE_SHA256}  /tmp/node.tar.xz" | sha256sum --check --strict' in download
    lock = json.loads((PROJECT_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    engines = {
        name: info["engines"]["node"] for name, info in lock["packages"].items() if "node" in info.get("engines", {})
    }
    assert engines
    for name, engine in engines.items():
        assert node_satisfies(version, engine), (name, engine)


def node_satisfies(version: tuple[int, ...], requirement: str) -> bool:
    """npm's engines ranges as they appear in the lockfile: ``>=X[.Y.Z]``, ``^X``, joined with ``||``."""
    for alternative in requirement.split("||"):
        text = alternative.replace(" ", "")
        bound = tuple(int(part) for part in re.sub(r"^(>=|\^)", "", text).split("."))
        padded = bound + (0,) * (3 - len(bound))
        if text.startswith(">=") and version >= padded:
            return True
        if text.startswith("^") and version[0] == padded[0] and version >= padded:
            return True
        assert text.startswith((">=", "^")), f"unexpected engines range {requirement!r}"
    return False


def test_package_json_pins_what_the_lockfile_holds() -> None:
    package = json.loads((PROJECT_ROOT / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((PROJECT_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_project_is_installed_with_the_constraints_file(stages: dict[str, Stage]) -> None:
    [runtime] = [stage for stage in stages.values() if any("pip install" in rest for rest in stage.args("RUN"))]
    assert runtime.name == "runtime"
    [pip] = [rest for rest in runtime.args("RUN") if "pip install" in rest]
    words = shlex.split(pip.split("&&")[0])
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert words[-1] == "."
    copied = [path for rest in runtime.args("COPY") if copy_from(rest)[0] is None for path in copy_from(rest)[1]]
    assert {"pyproject.toml", "constraints.txt", "clinvk_core", "handlers"} <= set(copied)


def test_constraints_pin_every_dependency_of_pyproject_to_the_same_version() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    constraints = {}
    for line in (PROJECT_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            constraints[canonical(name)] = version.strip()
    declared = [*project["dependencies"], *(dep for deps in project["optional-dependencies"].values() for dep in deps)]
    for text in declared:
        requirement = Requirement(text)
        [specifier] = list(requirement.specifier)
        assert specifier.operator == "==", text
        assert constraints[canonical(requirement.name)] == specifier.version, text


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_keeps_state_under_tmp_and_finds_the_clis(stages: dict[str, Stage], template: dict[str, Any]) -> None:
    env = env_of(stages, "runtime")
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in ("CLINVK_STATE_DIR", "HOME"):
        assert env[name].startswith("/tmp/")  # the only writable path on Lambda
        assert env[name] == globals_env[name]
    assert env["TMPDIR"].startswith("/tmp")
    clis = next(stage for stage in stages.values() if any("npm ci" in rest for rest in stage.args("RUN")))
    npm_dir = clis.args("WORKDIR")[-1]
    copies = {
        copy_from(rest)[1][0]: copy_from(rest)[2]
        for rest in stages["runtime"].args("COPY")
        if copy_from(rest)[0] == clis.name
    }
    assert copies[f"{npm_dir}/node_modules"] == f"{npm_dir}/node_modules"  # the launchers' links stay valid
    assert env["CLINVK_BIN_DIR"] == f"{npm_dir}/node_modules/.bin"
    [node] = [destination for source, destination in copies.items() if source.endswith("/bin/node")]
    assert node.rsplit("/", 1)[0] in LAMBDA_PATH  # gemini's launcher runs `env node`


def test_the_build_context_holds_what_the_dockerfile_copies(stages: dict[str, Stage]) -> None:
    patterns = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in stages.values():
        for rest in stage.args("COPY"):
            source, paths, _ = copy_from(rest)
            if source is not None:
                continue
            for path in paths:
                assert (PROJECT_ROOT / path).exists(), path
                assert not ignored(path, patterns), path
    assert ignored("clinvk_core/__pycache__/config.cpython-312.pyc", patterns)
    assert ignored(".venv/bin/python", patterns)
    assert ignored("node_modules/.bin/claude", patterns)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").removeprefix("**/")
        if any(fnmatch.fnmatchcase(c, glob) or fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], glob) for c in candidates):
            excluded = not negated
    return excluded
