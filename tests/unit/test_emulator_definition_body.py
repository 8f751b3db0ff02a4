"""Routes written in an Api's OpenAPI DefinitionBody reach the emulator like those of Api events."""

from __future__ import annotations

from pathlib import Path

from clinvk_core.emulator.template import Function, Route, functions, load_template

TEMPLATE = r"""
Globals:
  Function:
    Timeout: 10
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      DefinitionBody:
        openapi: "3.0.1"
        paths:
          /items/{id}:
            parameters:
              - {name: id, in: path, required: true}
            get:
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Items.Arn}/invocations
            delete:
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri:
                  Fn::Sub:
                    - arn:aws:apigateway:${Region}:lambda:path/2015-03-31/functions/${Items.Arn}/invocations
                    - Region: eu-west-1
          /stream:
            post:
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/\
                  ${Streamer.Arn}/response-streaming-invocations"
                responseTransferMode: STREAM
          /files/{proxy+}:
            x-amazon-apigateway-any-method:
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Items.Arn}/invocations
          /elsewhere:
            get:
              x-amazon-apigateway-integration:
                type: http_proxy
                httpMethod: GET
                uri: https://example.com/elsewhere
          /mock:
            get:
              x-amazon-apigateway-integration:
                type: mock
  Items:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handlers.items.handler
      Role: !GetAtt Role.Arn
      Events:
        List:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /items, Method: get}
  Streamer:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 900
      ImageConfig:
        Command: ["handlers.streamer:app"]
"""


def parse(tmp_path: Path) -> dict[str, Function]:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    template = load_template(path)
    assert template["Resources"]["Items"]["Properties"]["Role"] == {"Fn::GetAtt": ["Role", "Arn"]}
    return {function.name: function for function in functions(template)}


def test_definition_body_routes_join_the_event_routes(tmp_path: Path) -> None:
    items = parse(tmp_path)["Items"]
    assert set(items.routes) == {
        Route("GET", "/items"),  # from its Api event
        Route("GET", "/items/{id}"),  # !Sub with ${Items.Arn}
        Route("DELETE", "/items/{id}"),  # the [string, variables] form of !Sub
        Route("ANY", "/files/{proxy+}"),  # x-amazon-apigateway-any-method
    }
    assert not items.streaming
    assert items.timeout == 10.0


def test_a_stream_integration_makes_its_function_streaming(tmp_path: Path) -> None:
    streamer = parse(tmp_path)["Streamer"]
    assert streamer.routes == (Route("POST", "/stream"),)
    assert streamer.streaming
    assert (streamer.module, streamer.attribute, streamer.timeout) == ("handlers.streamer", "app", 900.0)


def test_integrations_that_are_not_a_templates_function_are_not_routes(tmp_path: Path) -> None:
    served = {route.path for function in parse(tmp_path).values() for route in function.routes}
    assert "/elsewhere" not in served
    assert "/mock" not in served
