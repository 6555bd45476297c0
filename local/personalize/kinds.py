"""The engine's resource kinds, one row each: how a kind is named in ARNs and operations, which
member holds its ARN, what narrows its List*, and what its Delete* must respect. The store keeps one
folder a kind; resources.py serves Describe*/List*/Delete* of every kind from this table; the
shapes of the answers come from botocore's service model (ops.page / ops.shaped)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from local.personalize.errors import NotFound

NOW, PENDING = "now", "pending"  # how Delete* removes a kind: at once, or after DELETE PENDING


@dataclass(frozen=True)
class Kind:
    name: str  # the store's folder and the ARN's resource type: dataset-group
    noun: str  # the operations' suffix: DescribeDatasetGroup, ListDatasetGroups, DeleteDatasetGroup
    arn_member: str  # the member that holds the ARN, in requests and records: datasetGroupArn
    arn_type: str = ""  # the ARN's resource type where it is not `name` (a solution version's)
    arn_depth: int = 1  # path segments after the type: dataset/<group>/<TYPE> has 2
    parent: str | None = None  # the List* request member that narrows the list: datasetGroupArn
    parent_of: Callable[[dict], str] | None = None  # a record's parent ARN, where no member holds it
    parent_must_exist: bool = False  # List* with an unknown parent is ResourceNotFound
    used_by: tuple[tuple[str, str], ...] = ()  # (kind, member): records that refer to it block Delete*
    children_block_delete: bool = False  # Delete* is refused while any child kind has a record in it
    delete: str | None = None  # NOW, PENDING, or None: the service has no Delete* for the kind
    logged: bool = False  # the long operations, worth a log line at each status

    @property
    def label(self) -> str:
        return self.name.replace("-", " ")

    @property
    def resource_type(self) -> str:
        return self.arn_type or self.name

    def parent_arn(self, record: dict) -> str | None:
        return self.parent_of(record) if self.parent_of else record.get(self.parent)


def _version_solution(campaign: dict) -> str:
    """ListCampaigns narrows by solutionArn: a campaign's solution is its version's ARN without the id."""
    return campaign["solutionVersionArn"].rsplit("/", 1)[0]


# DeleteSchema (botocore personalize 2018-05-22): "Before deleting a schema, you must delete all datasets
# referencing the schema." DeleteDatasetGroup: "Before you delete a dataset group, you must delete ...
# event trackers ... solutions ... datasets" (and, in the engine, its filters). ListCampaigns: "campaigns
# that use the given solution". Deletes that also need work of their own (a dataset's import jobs, a
# solution's versions, a campaign's model) add it with resources.before_delete.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("schema", "Schema", "schemaArn", used_by=(("dataset", "schemaArn"),), delete=NOW),
        Kind("dataset-group", "DatasetGroup", "datasetGroupArn", children_block_delete=True, delete=PENDING),
        Kind("dataset", "Dataset", "datasetArn", arn_depth=2, parent="datasetGroupArn", delete=PENDING),
        Kind(
            "dataset-import-job", "DatasetImportJob", "datasetImportJobArn", parent="datasetArn", logged=True
        ),
        Kind("solution", "Solution", "solutionArn", parent="datasetGroupArn", delete=PENDING),
        Kind(
            "solution-version",
            "SolutionVersion",
            "solutionVersionArn",
            arn_type="solution",
            arn_depth=2,
            parent="solutionArn",
            parent_must_exist=True,
            logged=True,
        ),
        Kind(
            "campaign",
            "Campaign",
            "campaignArn",
            parent="solutionArn",
            parent_of=_version_solution,
            delete=PENDING,
            logged=True,
        ),
        Kind("event-tracker", "EventTracker", "eventTrackerArn", parent="datasetGroupArn", delete=PENDING),
        Kind("filter", "Filter", "filterArn", parent="datasetGroupArn", delete=PENDING),
    )
}


def children(kind: Kind) -> list[Kind]:
    """The kinds listed by this kind's ARN (a dataset group's datasets, solutions, trackers, filters)."""
    return [k for k in KINDS.values() if k.parent == kind.arn_member and k.parent_of is None]


def parent_kind(kind: Kind) -> Kind:
    return next(k for k in KINDS.values() if k.arn_member == kind.parent)


def kind_of(arn: str) -> Kind:
    """The kind of a Personalize ARN, by its resource type and path (`solution/<name>/<id>` is a version)."""
    resource = arn.split(":", 5)[-1] if arn.count(":") >= 5 else ""
    resource_type, _, path = resource.partition("/")
    depth = path.count("/") + 1
    for kind in KINDS.values():
        if (kind.resource_type, kind.arn_depth) == (resource_type, depth):
            return kind
    raise NotFound(f"{arn!r} is not the ARN of a resource that can be tagged.")
