"""Load template.yaml and resolve it to the local values of one stack.

The template is the single source of truth; this module turns it into plain Python values:
parameters (defaults + overrides), conditions, physical names, and every intrinsic the
template uses (Ref, GetAtt, Sub, If, Join, Select, Split, FindInMap, Equals/And/Or/Not,
ImportValue is refused). SAM Globals are merged into each function the way SAM does.
Resources without an explicit name get a deterministic one, so a restart finds its data.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
NO_VALUE = object()  # AWS::NoValue: the key it sits under disappears


class TemplateError(ValueError):
    """The template cannot be resolved locally; the message names the place."""


# --- YAML with CloudFormation short tags -------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag_constructor(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":  # !GetAtt A.B is the short form of [A, B]
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag_constructor)
# CloudFormation dates stay strings (AWSTemplateFormatVersion: 2010-09-09).
_CfnLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in _CfnLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> dict:
    try:
        doc = yaml.load(text, Loader=_CfnLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"template is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise TemplateError("template has no Resources section")
    return doc


# --- SAM Globals -------------------------------------------------------------------------

_GLOBAL_SECTIONS = {
    "AWS::Serverless::Function": "Function",
    "AWS::Serverless::Api": "Api",
    "AWS::Serverless::HttpApi": "HttpApi",
    "AWS::Serverless::SimpleTable": "SimpleTable",
    "AWS::Serverless::StateMachine": "StateMachine",
    "AWS::Serverless::LayerVersion": "LayerVersion",
}


def merge_globals(global_props: Any, local_props: Any) -> Any:
    """SAM's rule: maps merge (local wins), lists concatenate, scalars: local wins."""
    if isinstance(global_props, dict) and isinstance(local_props, dict):
        if _is_intrinsic(global_props) or _is_intrinsic(local_props):
            return copy.deepcopy(local_props)
        merged = copy.deepcopy(global_props)
        for key, value in local_props.items():
            merged[key] = merge_globals(global_props[key], value) if key in global_props else value
        return merged
    if isinstance(global_props, list) and isinstance(local_props, list):
        return copy.deepcopy(global_props) + copy.deepcopy(local_props)
    return copy.deepcopy(local_props)


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref"))


# --- The resolved stack --------------------------------------------------------------------


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict  # raw (unresolved) properties, Globals merged in
    physical_name: str = ""


@dataclass
class Template:
    path: Path
    doc: dict
    parameters: dict[str, Any]
    stack_name: str
    region: str = REGION
    account_id: str = ACCOUNT_ID
    conditions: dict[str, bool] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    # Strings that stand for AWS-only URLs, rewritten to local ones (e.g. the API's URL).
    url_rewrites: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    # -- queries -------------------------------------------------------------------------
    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside value; AWS::NoValue keys are dropped."""
        result = self._resolve(value)
        return None if result is NO_VALUE else result

    def outputs(self) -> dict[str, Any]:
        out = {}
        for name, spec in (self.doc.get("Outputs") or {}).items():
            if "Condition" in spec and not self._condition(spec["Condition"]):
                continue
            out[name] = self.resolve(spec.get("Value"))
        return out

    def arn(self, resource: Resource) -> str:
        return self._get_att(resource.logical_id, "Arn")

    # -- intrinsics ------------------------------------------------------------------------
    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = (self._resolve(v) for v in value)
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return self._rewrite(value) if isinstance(value, str) else value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                result = handler(self, arg)
                return self._rewrite(result) if isinstance(result, str) else result
        out = {}
        for k, v in value.items():
            resolved = self._resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _rewrite(self, text: str) -> str:
        for aws_url, local_url in self.url_rewrites.items():
            text = text.replace(aws_url, local_url)
        return text

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return _ref_value(self, self.resources[name])
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"GetAtt on unknown resource {logical_id!r}")
        return _att_value(self, resource, attribute)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self._resolve(arg[1]))

        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):  # ${!Literal} stays as ${Literal}
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.resources:
                return str(self._get_att(*expr.split(".", 1)))
            return str(self._ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _condition(self, name: str) -> bool:
        if name not in self.conditions:  # resolved on first use: conditions may refer to later ones
            exprs = self.doc.get("Conditions") or {}
            if name not in exprs:
                raise TemplateError(f"unknown condition {name!r}")
            self.conditions[name] = bool(self.resolve(exprs[name]))
        return self.conditions[name]

    def _if(self, arg: list) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self._condition(name) else when_false)


def _fn_select(t: Template, arg: list) -> Any:
    index, items = t._resolve(arg[0]), t._resolve(arg[1])
    return items[int(index)]


def _fn_find_in_map(t: Template, arg: list) -> Any:
    name, top, second = (t._resolve(a) for a in arg)
    try:
        return t.doc["Mappings"][name][top][second]
    except KeyError as exc:
        raise TemplateError(f"FindInMap {name}/{top}/{second}: no such entry") from exc


def _fn_import_value(t: Template, arg: Any) -> Any:
    raise TemplateError(f"Fn::ImportValue {arg!r} needs another stack; not available locally")


_INTRINSICS = {
    "Ref": lambda t, a: t._ref(a),
    "Fn::GetAtt": lambda t, a: t._get_att(*(a if isinstance(a, list) else a.split(".", 1))),
    "Fn::Sub": lambda t, a: t._sub(a),
    "Fn::Join": lambda t, a: str(t._resolve(a[0])).join(str(x) for x in t._resolve(a[1])),
    "Fn::Select": _fn_select,
    "Fn::Split": lambda t, a: str(t._resolve(a[1])).split(t._resolve(a[0])),
    "Fn::If": lambda t, a: t._if(a),
    "Fn::Equals": lambda t, a: str(t._resolve(a[0])) == str(t._resolve(a[1])),
    "Fn::And": lambda t, a: all(t._resolve(c) for c in a),
    "Fn::Or": lambda t, a: any(t._resolve(c) for c in a),
    "Fn::Not": lambda t, a: not t._resolve(a[0]),
    "Condition": lambda t, a: t._condition(a),
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::GetAZs": lambda t, a: [f"{t.region}a", f"{t.region}b", f"{t.region}c"],
    "Fn::Base64": lambda t, a: __import__("base64").b64encode(str(t._resolve(a)).encode()).decode(),
    "Fn::ImportValue": _fn_import_value,
    # Rule functions (Rules section only; CloudFormation's "AWS rule functions" page).
    "Fn::EachMemberEquals": lambda t, a: all(str(m) == str(t._resolve(a[1])) for m in t._resolve(a[0])),
    "Fn::EachMemberIn": lambda t, a: set(map(str, t._resolve(a[0]))) <= set(map(str, t._resolve(a[1]))),
    "Fn::Contains": lambda t, a: str(t._resolve(a[1])) in [str(x) for x in t._resolve(a[0])],
}

# --- Physical names, Ref and GetAtt per resource type ------------------------------------

# The property that carries a resource's explicit physical name, by type.
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Serverless::LayerVersion": "LayerName",
}


def _default_name(t: Template, r: Resource) -> str:
    # Deterministic (no random suffix as CloudFormation adds), so a restart finds its data.
    name = f"{t.stack_name}-{r.logical_id}"
    if r.type == "AWS::S3::Bucket":
        name = re.sub(r"[^a-z0-9.-]", "-", name.lower())[:63]
    if r.type == "AWS::KMS::Key":
        digest = hashlib.sha256(r.logical_id.encode()).hexdigest()  # hash() differs per process
        name = "00000000-0000-4000-8000-" + digest[:12]
    return name


def _physical_name(t: Template, r: Resource) -> str:
    prop = _NAME_PROPERTY.get(r.type)
    if prop and r.properties.get(prop) is not None:
        return str(t.resolve(r.properties[prop]))
    return _default_name(t, r)


def _arn(t: Template, service: str, rest: str) -> str:
    return f"arn:aws:{service}:{t.region}:{t.account_id}:{rest}"


def _ref_value(t: Template, r: Resource) -> str:
    n = r.physical_name
    by_type = {
        "AWS::Serverless::StateMachine": lambda: _arn(t, "states", f"stateMachine:{n}"),
        "AWS::StepFunctions::StateMachine": lambda: _arn(t, "states", f"stateMachine:{n}"),
        "AWS::SNS::Topic": lambda: _arn(t, "sns", n),
        "AWS::SQS::Queue": lambda: f"https://sqs.{t.region}.amazonaws.com/{t.account_id}/{n}",
        "AWS::Serverless::LayerVersion": lambda: _arn(t, "lambda", f"layer:{n}:1"),
        "AWS::Lambda::LayerVersion": lambda: _arn(t, "lambda", f"layer:{n}:1"),
        "AWS::Serverless::HttpApi": lambda: _api_id(r),
        "AWS::Serverless::Api": lambda: _api_id(r),
    }
    return by_type.get(r.type, lambda: n)()


def _api_id(r: Resource) -> str:
    return re.sub(r"[^a-z0-9]", "", r.logical_id.lower())[:10] or "localapi"


def _att_value(t: Template, r: Resource, attribute: str) -> Any:
    n = r.physical_name
    arns = {
        "AWS::DynamoDB::Table": lambda: _arn(t, "dynamodb", f"table/{n}"),
        "AWS::Serverless::SimpleTable": lambda: _arn(t, "dynamodb", f"table/{n}"),
        "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{n}",
        "AWS::Serverless::Function": lambda: _arn(t, "lambda", f"function:{n}"),
        "AWS::Lambda::Function": lambda: _arn(t, "lambda", f"function:{n}"),
        "AWS::Serverless::StateMachine": lambda: _ref_value(t, r),
        "AWS::StepFunctions::StateMachine": lambda: _ref_value(t, r),
        "AWS::SNS::Topic": lambda: _ref_value(t, r),
        "AWS::SQS::Queue": lambda: _arn(t, "sqs", n),
        "AWS::KMS::Key": lambda: _arn(t, "kms", f"key/{n}"),
        "AWS::IAM::Role": lambda: f"arn:aws:iam::{t.account_id}:role/{n}",
        "AWS::Logs::LogGroup": lambda: _arn(t, "logs", f"log-group:{n}:*"),
        "AWS::Scheduler::Schedule": lambda: _arn(t, "scheduler", f"schedule/default/{n}"),
        "AWS::Events::Rule": lambda: _arn(t, "events", f"rule/{n}"),
        "AWS::CloudWatch::Alarm": lambda: _arn(t, "cloudwatch", f"alarm:{n}"),
    }
    if attribute == "Arn":
        make = arns.get(r.type)
        if make is None:
            service = r.type.split("::")[1].lower()
            return _arn(t, service, f"{r.logical_id}/{n}")
        return make()
    special = {
        "Name": n,
        "TopicName": n,
        "QueueName": n,
        "KeyId": n,
        "StreamArn": _arn(t, "dynamodb", f"table/{n}/stream/local"),
        "DomainName": f"{n}.s3.amazonaws.com",
        "RegionalDomainName": f"{n}.s3.{t.region}.amazonaws.com",
        "ApiEndpoint": f"https://{_api_id(r)}.execute-api.{t.region}.amazonaws.com",
        "ApiId": _api_id(r),
        "RoleId": f"AROA{r.logical_id.upper()[:16]}",
    }
    if attribute in special:
        return special[attribute]
    raise TemplateError(f"GetAtt {r.logical_id}.{attribute} is not supported locally")


def _add_implicit_http_api(t: Template) -> None:
    """SAM creates ServerlessHttpApi for HttpApi events that name no ApiId."""
    for r in t.of_type("AWS::Serverless::Function"):
        for event in (r.properties.get("Events") or {}).values():
            if event.get("Type") == "HttpApi" and "ApiId" not in (event.get("Properties") or {}):
                props = copy.deepcopy((t.doc.get("Globals") or {}).get("HttpApi") or {})
                t.resources.setdefault(
                    "ServerlessHttpApi", Resource("ServerlessHttpApi", "AWS::Serverless::HttpApi", props)
                )
                return


# --- Loading ---------------------------------------------------------------------------------


def _parameter_values(doc: dict, overrides: dict[str, Any]) -> dict[str, Any]:
    params = {}
    declared = doc.get("Parameters") or {}
    for name, spec in declared.items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default; pass it as an override")
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(value) not in [str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        params[name] = value
    return params


def _check_rules(t: Template) -> None:
    """Refuse parameters that break the template's Rules, as CloudFormation does before any resource."""
    for name, rule in (t.doc.get("Rules") or {}).items():
        if "RuleCondition" in rule and not t.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions") or []:
            if not t.resolve(assertion["Assert"]):
                why = assertion.get("AssertDescription") or f"assertion {assertion['Assert']!r} failed"
                raise TemplateError(f"parameters break rule {name}: {why}")


def load(path: str | Path, overrides: dict[str, Any] | None = None, stack_name: str = "local") -> Template:
    """Read and resolve template.yaml; unknown override names are ignored (returned in .ignored)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise TemplateError(f"{path} not found")
    doc = load_yaml(path.read_text())
    overrides = dict(overrides or {})
    declared = doc.get("Parameters") or {}
    template = Template(
        path=path,
        doc=doc,
        parameters=_parameter_values(doc, {k: v for k, v in overrides.items() if k in declared}),
        stack_name=stack_name,
    )
    template.ignored_overrides = sorted(set(overrides) - set(declared))  # type: ignore[attr-defined]
    _check_rules(template)
    for name in doc.get("Conditions") or {}:
        template._condition(name)

    global_sections = doc.get("Globals") or {}
    for logical_id, spec in doc["Resources"].items():
        condition = spec.get("Condition")
        if condition and not template._condition(condition):
            continue
        rtype = spec.get("Type", "")
        props = spec.get("Properties") or {}
        section = _GLOBAL_SECTIONS.get(rtype)
        if section and section in global_sections:
            props = merge_globals(global_sections[section], props)
        template.resources[logical_id] = Resource(logical_id, rtype, props)
    _add_implicit_http_api(template)
    for resource in template.resources.values():  # names may Ref parameters, never other names
        resource.physical_name = _physical_name(template, resource)
    return template
